"""A self-contained HTML report: summary, a table of items, a sequence diagram per item.

One file, no script, no network: inline CSS and inline SVG, and a Content-Security-Policy that
forbids scripts and every fetch, so even a name a peer chose cannot run or call out (everything
is escaped besides). Tokens appear only as fingerprints.
"""

from __future__ import annotations

import datetime
import platform
from collections.abc import Iterable, Mapping
from html import escape
from importlib import metadata
from pathlib import Path

from freshtoken.scenarios._diagram import Diagram
from freshtoken.scenarios._items import ReportItem
from freshtoken.scenarios._rows import scrub
from freshtoken.scenarios._runner import ScenarioResult
from freshtoken.scenarios._svg import PALETTE, PIN_COLOUR, STALE_COLOUR, render_svg, token_colour

__all__ = ["render_html", "write_html"]

_CSS = f"""
:root{{color-scheme:light}}
body{{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
margin:0;padding:24px 32px;color:#1d232b;background:#fff}}
h1{{font-size:22px;margin:0 0 4px}}
h2{{font-size:16px;margin:0}}
.muted{{color:#5b6470}}
.verdict{{font-size:16px;font-weight:600;margin:6px 0 12px}}
.verdict .failed,.badge.failed{{color:#fff;background:{PIN_COLOUR}}}
.verdict span{{padding:2px 8px;border-radius:4px;margin-right:6px;background:#eef1f4}}
.verdict .passed,.badge.passed{{color:#fff;background:#1b7f3b}}
.badge{{display:inline-block;min-width:44px;text-align:center;font:600 12px/20px system-ui,
sans-serif;border-radius:4px;padding:0 6px;background:#dfe3e8;color:#333}}
dl.summary{{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:0 0 18px}}
dl.summary dt{{color:#5b6470}}dl.summary dd{{margin:0}}
table.items{{border-collapse:collapse;margin-bottom:24px;min-width:60%}}
table.items th,table.items td{{border-bottom:1px solid #e3e6ea;padding:4px 10px;text-align:left;
vertical-align:top}}
table.items td.num{{text-align:right;font-variant-numeric:tabular-nums}}
table.items ul{{margin:0;padding-left:18px}}
section.item{{border:1px solid #dfe3e8;border-radius:6px;margin:0 0 14px;background:#fff}}
section.item.failed{{border-color:{PIN_COLOUR}}}
section.item>details>summary{{cursor:pointer;padding:8px 12px;font-weight:600}}
section.item .body{{padding:0 12px 12px}}
ul.failures li b{{color:{PIN_COLOUR}}}
pre.output{{background:#f6f7f9;border:1px solid #e3e6ea;padding:8px;overflow:auto;max-height:24em;
font-size:12px}}
.legend{{margin:6px 0 8px;font-size:12px}}
.legend .chip{{display:inline-block;font:600 11px/16px ui-monospace,"DejaVu Sans Mono",monospace;
color:#fff;border-radius:3px;padding:0 5px;margin:0 4px 2px 0}}
.legend .chip.stale{{outline:3px solid {STALE_COLOUR}}}
.legend .key{{display:inline-block;padding:0 6px;border-radius:3px;margin-right:4px}}
.wrap{{overflow-x:auto}}
svg.diagram{{display:block;background:#fff}}
svg.diagram text{{font:11px ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;fill:#1d232b;
paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}}
svg.diagram .lane rect{{fill:#eef1f4;stroke:#9aa5b1}}
svg.diagram .lane text{{font-weight:600;stroke:none}}
svg.diagram .life{{stroke:#b8c0c8;stroke-dasharray:4 4}}
svg.diagram .stream rect{{fill:#edf5fc;stroke:#8fbfe0;stroke-dasharray:3 3}}
svg.diagram .sl{{font-size:10px;fill:#2c6fa3}}
svg.diagram .time{{font-size:10px;fill:#7b8794}}
svg.diagram .a{{stroke-width:1.5}}
svg.diagram .t-response .a,svg.diagram .t-sse .a,svg.diagram .t-error .a{{stroke-dasharray:5 3}}
svg.diagram .t-sse .a{{stroke-width:1}}
svg.diagram .stale .a{{stroke-width:3;stroke-dasharray:7 3}}
svg.diagram .more{{stroke-opacity:.45}}
svg.diagram .n{{font-weight:700}}
svg.diagram .tk{{stroke:none;fill:#fff;font-weight:700;font-size:10px}}
svg.diagram .st{{fill:{STALE_COLOUR};font-weight:700}}
svg.diagram .pin{{fill:{PIN_COLOUR};font-weight:700}}
svg.diagram .pinbg{{fill:#fde8ec}}
svg.diagram .t-error .l{{fill:#9c1c1c}}
svg.diagram circle{{fill:#7b8794}}
svg.diagram .t-error circle{{fill:#9c1c1c}}svg.diagram .t-ok circle{{fill:#1b7f3b}}
svg.diagram .t-refresh circle,svg.diagram .t-replay circle{{fill:#e69f00}}
svg.diagram .band{{fill:#eef1f4}}
svg.diagram .t-rotation .band,.key.t-rotation{{fill:#fff1c9;background:#fff1c9}}
svg.diagram .t-expiry .band,.key.t-expiry{{fill:#ffe1c4;background:#ffe1c4}}
svg.diagram .t-revocation .band,.key.t-revocation{{fill:#ecdcf7;background:#ecdcf7}}
svg.diagram .t-fault .band,svg.diagram .t-error .band,.key.t-fault{{fill:#fadadd;background:#fadadd}}
"""

# No script may run and nothing may be fetched: the report is a document, not an application.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _version() -> str:
    try:
        return metadata.version("freshtoken")
    except metadata.PackageNotFoundError:
        return "unknown"


def _item(entry: ReportItem | ScenarioResult) -> ReportItem:
    return entry if isinstance(entry, ReportItem) else ReportItem.from_result(entry)


def render_html(
    entries: Iterable[ReportItem | ScenarioResult],
    *,
    title: str = "freshtoken report",
    subject: str | None = None,
    versions: Mapping[str, str] | None = None,
    duration: float | None = None,
) -> str:
    """The whole report as one HTML document (see :func:`write_html`)."""
    items = [_item(e) for e in entries]
    counts = {
        outcome: sum(item.outcome == outcome for item in items)
        for outcome in ("failed", "passed", "not applicable")
    }
    subjects = subject or ", ".join(dict.fromkeys(i.subject for i in items if i.subject)) or "-"
    revisions = ", ".join(sorted({i.protocol_version for i in items if i.protocol_version}))
    all_versions = {"freshtoken": _version(), "Python": platform.python_version()}
    if revisions:
        all_versions["MCP protocol revisions"] = revisions
    all_versions.update(versions or {})
    total = sum(i.duration for i in items) if duration is None else duration
    generated = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{escape(title)}</h1>",
        '<p class="verdict">'
        + "".join(
            f'<span class="{cls}">{counts[outcome]} {outcome}</span>'
            for outcome, cls in (
                ("failed", "failed" if counts["failed"] else ""),
                ("passed", "passed"),
                ("not applicable", ""),
            )
        )
        + "</p>",
        '<dl class="summary">',
        f"<dt>subject</dt><dd>{escape(_clip(subjects, 240))}</dd>",
        *(f"<dt>{escape(k)}</dt><dd>{escape(_clip(v, 240))}</dd>" for k, v in all_versions.items()),
        f"<dt>duration</dt><dd>{total:.2f} s</dd><dt>items</dt><dd>{len(items)}</dd>",
        f"<dt>generated</dt><dd>{generated}</dd></dl>",
        _legend_keys(),
        "</header>",
        _table(items),
    ]
    parts += [_section(index, item) for index, item in enumerate(items, 1)]
    parts.append("</body></html>\n")
    return "".join(parts)


def write_html(
    entries: Iterable[ReportItem | ScenarioResult],
    path: str | Path,
    *,
    title: str = "freshtoken report",
    subject: str | None = None,
    versions: Mapping[str, str] | None = None,
    duration: float | None = None,
) -> Path:
    """Write :func:`render_html`'s report to ``path`` (UTF-8) and return the path."""
    target = Path(path)
    html = render_html(entries, title=title, subject=subject, versions=versions, duration=duration)
    target.write_text(html, encoding="utf-8")
    return target


def _legend_keys() -> str:
    keys = [
        ("t-rotation", "\u27f3 rotation"),
        ("t-expiry", "\u25f7 expiry"),
        ("t-revocation", "\u2298 revocation"),
        ("t-fault", "\u26a1 injected fault"),
    ]
    return (
        '<p class="legend">marks: '
        + "".join(f'<span class="key {cls}">{text}</span>' for cls, text in keys)
        + " \u00b7 <b>stale</b>: a bearer sent after it was rotated, expired or revoked "
        "(a red outline) \u00b7 "
        f'<b style="color:{PIN_COLOUR}">\u2691</b>: the events a failed invariant is about</p>'
    )


def _table(items: list[ReportItem]) -> str:
    rows = []
    for index, item in enumerate(items, 1):
        failed = "".join(f"<li>{escape(_clip(name, 80))}</li>" for name, _ in item.failures)
        rows.append(
            f'<tr class="{_cls(item.outcome)}"><td class="num">{index}</td>'
            f'<td><a href="#item-{index}">{escape(_clip(item.name, 160))}</a></td>'
            f"<td>{escape(_clip(item.subject, 80))}</td>"
            f'<td><span class="badge {_cls(item.outcome)}">{_badge(item.outcome)}</span></td>'
            f"<td>{f'<ul>{failed}</ul>' if failed else ''}</td>"
            f'<td class="num">{item.duration:.2f} s</td></tr>'
        )
    return (
        '<table class="items"><thead><tr><th>#</th><th>item</th><th>subject</th><th>result</th>'
        "<th>failed invariants</th><th>duration</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _clip(text: str, limit: int) -> str:
    """Names (of scenarios, tests, subjects, checks) are shown as given, only shortened; free
    text (reasons, output, event details) goes through :func:`scrub` instead."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _cls(outcome: str) -> str:
    return outcome.replace(" ", "-")


def _badge(outcome: str) -> str:
    return {"passed": "pass", "failed": "FAIL"}.get(outcome, "n/a")


def _section(index: int, item: ReportItem) -> str:
    name = _clip(item.name, 160)
    about = " \u00b7 ".join(
        escape(_clip(text, 200))
        for text in (
            f"on {item.subject}" if item.subject else "",
            item.title,
            f"reproduces {item.reproduces}" if item.reproduces else "",
        )
        if text
    )
    diagram = item.diagram() if item.events else None
    parts = [
        f'<section class="item {_cls(item.outcome)}" id="item-{index}" '
        f'data-name="{escape(name)}" data-outcome="{escape(item.outcome)}">',
        f"<details{' open' if item.outcome == 'failed' else ''}><summary>"
        f'<span class="badge {_cls(item.outcome)}">{_badge(item.outcome)}</span> '
        f'{escape(name)} <span class="muted">{about}</span></summary><div class="body">',
    ]
    if item.failures:
        pinned = {name: 0 for name, _ in item.failures}
        for names in item.pins.values():
            for check in names:
                pinned[check] = pinned.get(check, 0) + 1
        parts.append('<ul class="failures">')
        for check, reason in item.failures:
            where = (
                f' <span class="muted">(\u2691 {pinned[check]} event(s) marked below)</span>'
                if pinned.get(check)
                else ""
            )
            parts.append(
                f'<li data-check="{escape(_clip(check, 80))}"><b>{escape(_clip(check, 80))}</b>: '
                f"{escape(scrub(reason, 2000))}{where}</li>"
            )
        parts.append("</ul>")
    if item.output:
        parts.append(f'<pre class="output">{escape(scrub(item.output, 20000))}</pre>')
    if diagram is None:
        parts.append('<p class="muted">No freshtoken timeline was recorded for this item.</p>')
    else:
        parts.append(_token_legend(diagram))
        parts.append(f'<div class="wrap">{render_svg(diagram, title=name)}</div>')
        collapsed = sum(row.count > 1 for row in diagram.rows)
        note = f"{diagram.events} events drawn as {len(diagram.rows)} rows"
        if collapsed:
            note += f"; {collapsed} rows stand for runs of alike events (\u00d7 n)"
        if diagram.omitted:
            note += f"; {diagram.omitted} rows left out"
        parts.append(f'<p class="muted">{note}. Hover a row for its events.</p>')
    parts.append("</div></details></section>")
    return "".join(parts)


def _token_legend(diagram: Diagram) -> str:
    if not diagram.tokens:
        return '<p class="legend muted">no tokens in this timeline</p>'
    chips = "".join(
        f'<span class="chip{" stale" if token in diagram.stale else ""}" '
        f'style="background:{token_colour(diagram, token)}">{escape(token)}</span>'
        for token in diagram.tokens
    )
    extra = (
        f" (colours repeat by hash after {len(PALETTE)})"
        if len(diagram.tokens) > len(PALETTE)
        else ""
    )
    return f'<p class="legend">tokens by fingerprint{extra}: {chips}</p>'
