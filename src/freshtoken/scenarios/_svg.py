"""The sequence diagram as inline SVG, written out directly.

A diagram here is a grid: lanes are columns at fixed x, rows are fixed-height lines, so the layout
is arithmetic and the renderer stays small. A library would add little: graphviz lays out graphs,
not sequence diagrams; Mermaid and PlantUML need JavaScript in the page or a Java runtime; SVG
builder packages only wrap the element strings this module writes anyway. Every text that came
from a peer goes through :func:`html.escape`, and labels use a monospace font so their width (and
where a token chip goes after them) is known without measuring.
"""

from __future__ import annotations

import hashlib
from html import escape

from freshtoken.scenarios._diagram import Diagram
from freshtoken.scenarios._rows import LANE_TITLES, Row

__all__ = ["PALETTE", "STALE_COLOUR", "render_svg", "token_colour"]

# Okabe-Ito and friends: distinguishable, and none of them is the red kept for stale bearers.
PALETTE = (
    "#0072b2",
    "#009e73",
    "#e69f00",
    "#cc79a7",
    "#56b4e9",
    "#8c564b",
    "#6a3d9a",
    "#17becf",
    "#b8860b",
    "#7f7f7f",
)
STALE_COLOUR = "#e8003d"
"""Kept for bearers sent after they were rotated, expired or revoked, and nothing else."""
ERROR_COLOUR = "#9c1c1c"
SSE_COLOUR = "#2c7fb8"
LINE_COLOUR = "#4a5360"
PIN_COLOUR = "#b00020"

GUTTER = 78
LANE_GAP = 200
FIRST_LANE = GUTTER + 92
HEADER = 42
ROW_H = 22
CHAR_W = 6.7  # 11 px monospace
CHIP_W = 58
RIGHT_PAD = 390

_SPAN_ICONS = {
    "rotation": "\u27f3",
    "expiry": "\u25f7",
    "revocation": "\u2298",
    "fault": "\u26a1",
    "error": "\u26a0",
}


def token_colour(diagram: Diagram, token: str) -> str:
    """One colour per token: the palette in order of first appearance, then a hash of the token."""
    index = diagram.tokens.index(token) if token in diagram.tokens else len(PALETTE)
    if index < len(PALETTE):
        return PALETTE[index]
    hue = int(hashlib.sha256(token.encode()).hexdigest()[:4], 16) % 360
    return f"hsl({hue},55%,38%)"


def render_svg(diagram: Diagram, *, title: str) -> str:
    """One ``<svg>`` element: lane headers and lifelines, SSE stream boxes, then the rows."""
    xs = {lane: FIRST_LANE + i * LANE_GAP for i, lane in enumerate(diagram.lanes)}
    width = FIRST_LANE + (len(diagram.lanes) - 1) * LANE_GAP + RIGHT_PAD
    height = HEADER + len(diagram.rows) * ROW_H + 12
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="diagram" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="sequence diagram: {escape(title)}">'
    ]
    for lane, x in xs.items():
        out.append(
            f'<g class="lane" data-lane="{lane}"><rect x="{x - 75}" y="6" width="150" '
            f'height="24" rx="4"/><text x="{x}" y="22" text-anchor="middle">'
            f"{escape(LANE_TITLES[lane])}</text>"
            f'<line class="life" x1="{x}" y1="30" x2="{x}" y2="{height - 6}"/></g>'
        )
    for group in diagram.streams:
        lo, hi = xs[group.lanes[0]] - 14, xs[group.lanes[1]] + 14
        top = HEADER + group.first * ROW_H
        box_h = (group.last - group.first + 1) * ROW_H
        out.append(
            f'<g class="stream" data-stream="{escape(group.key)}"><rect x="{lo}" y="{top}" '
            f'width="{hi - lo}" height="{box_h}" rx="6"/><text class="sl" x="{hi + 4}" '
            f'y="{top + 11}">SSE stream {escape(group.key)}</text></g>'
        )
    previous_time: float | None = None
    for index, row in enumerate(diagram.rows):
        out.append(_row(diagram, row, HEADER + index * ROW_H, xs, width, previous_time))
        previous_time = row.time
    out.append("</svg>")
    return "".join(out)


def _row(
    diagram: Diagram,
    row: Row,
    top: int,
    xs: dict[str, int],
    width: int,
    previous_time: float | None,
) -> str:
    classes = f"row {row.kind} t-{row.tag}"
    if row.stale:
        classes += " stale"
    if row.pins:
        classes += " pinned"
    attrs = f' data-seq="{" ".join(map(str, row.seqs))}"'
    if row.pins:
        attrs += f' data-pins="{escape(" ".join(row.pins))}"'
    parts = [f'<g class="{classes}"{attrs}>']
    if row.detail:
        parts.append(f"<title>{escape(row.detail)}</title>")
    if row.pins:
        parts.append(
            f'<rect class="pinbg" x="0" y="{top}" width="{width}" height="{ROW_H}"/>'
            f'<rect x="0" y="{top}" width="5" height="{ROW_H}" fill="{PIN_COLOUR}"/>'
        )
    if previous_time is None or abs(row.time - previous_time) > 1e-9:
        parts.append(
            f'<text class="time" x="{GUTTER - 6}" y="{top + 15}" text-anchor="end">'
            f"{row.time:+.3f}s</text>"
        )
    label = row.label
    if row.kind == "span":
        icon = _SPAN_ICONS.get(row.tag)
        label = f"{icon} {label}" if icon else label
        parts.append(
            f'<rect class="band" x="{GUTTER}" y="{top + 2}" width="{width - GUTTER - 8}" '
            f'height="{ROW_H - 4}" rx="3"/>'
        )
        x = GUTTER + 8
    elif row.kind == "mark":
        lane_x = xs[row.source]
        parts.append(f'<circle cx="{lane_x}" cy="{top + 11}" r="4.5"/>')
        x = lane_x + 10
    else:
        parts.append(_arrow(diagram, row, top, xs))
        x = min(xs[row.source], xs[row.target]) + 12
    parts.append(f'<text class="l" x="{x}" y="{top + 15 if row.kind != "arrow" else top + 11}">')
    parts.append(escape(label))
    if row.count > 1:
        parts.append(f' <tspan class="n">\u00d7 {row.count}</tspan>')
    parts.append("</text>")
    cx = x + (len(label) + (len(str(row.count)) + 3 if row.count > 1 else 0)) * CHAR_W + 8
    chip_y = top + (4 if row.kind != "arrow" else 0)
    for token in row.tokens:
        parts.append(_chip(diagram, token, int(cx), chip_y, token in row.stale))
        cx += CHIP_W + (44 if token in row.stale else 6)
    if row.pins:
        parts.append(
            f'<text class="pin" x="{int(cx) + 6}" y="{top + 15}">'
            f"\u2691 {escape(', '.join(row.pins))}</text>"
        )
    parts.append("</g>")
    return "".join(parts)


def _arrow(diagram: Diagram, row: Row, top: int, xs: dict[str, int]) -> str:
    x1, x2 = xs[row.source], xs[row.target]
    y = top + 16
    # Colours are attributes, not CSS classes: a bearer's colour is per token, not per kind.
    if row.stale:
        colour = STALE_COLOUR
    elif row.tag == "error":
        colour = ERROR_COLOUR
    elif row.tokens and row.tag in ("request", "replay", "refresh"):
        colour = token_colour(diagram, row.tokens[0])
    elif row.tag == "sse":
        colour = SSE_COLOUR
    else:
        colour = LINE_COLOUR
    direction = 1 if x2 > x1 else -1
    end = x2 - direction * 2
    stroke = f' stroke="{colour}"'
    fill = f' fill="{colour}"'
    parts = [
        f'<line class="a" x1="{x1}" y1="{y}" x2="{end}" y2="{y}"{stroke}/>',
        f'<path class="h" d="M{end} {y}l{-8 * direction} -4v8z"{fill}/>',
    ]
    if row.count > 1:
        parts.append(
            f'<line class="a more" x1="{x1}" y1="{y + 3}" x2="{end - 8 * direction}" '
            f'y2="{y + 3}"{stroke}/>'
        )
    return "".join(parts)


def _chip(diagram: Diagram, token: str, x: int, y: int, stale: bool) -> str:
    colour = token_colour(diagram, token)
    edge = f' stroke="{STALE_COLOUR}" stroke-width="3"' if stale else ""
    chip = (
        f'<g class="tok{" stale" if stale else ""}" data-token="{escape(token)}">'
        f'<rect x="{x}" y="{y}" width="{CHIP_W}" height="15" rx="3" fill="{colour}"{edge}/>'
        f'<text class="tk" x="{x + 4}" y="{y + 11}">{escape(token[:8])}</text>'
    )
    if stale:
        chip += f'<text class="st" x="{x + CHIP_W + 4}" y="{y + 11}">stale</text>'
    return chip + "</g>"
