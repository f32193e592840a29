"""The sequence-diagram model of a timeline: one row per thing worth drawing.

Both renderers (SVG for the HTML report, text for terminals) draw the same :class:`Diagram`, so
what a CI log shows and what the report shows cannot drift apart. Building it is three passes:
events become rows (hops between lanes, marks on a lane, spans across every lane), runs of alike
rows collapse into one row with a count, and rows that belong to one SSE stream are grouped.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from freshtoken._timeline import Event
from freshtoken.scenarios._rows import LANES, Row
from freshtoken.scenarios._translate import translate

__all__ = ["Diagram", "StreamGroup", "build_diagram", "format_diagram"]


COLLAPSE_MIN = 3
"""A signature must repeat this often inside a stretch before the stretch collapses."""
COLLAPSE_KINDS = 12
"""At most this many different rows make up one collapsed stretch (one call cycle with a replay)."""
MAX_ROWS = 1500


@dataclass(frozen=True, slots=True)
class StreamGroup:
    """Rows ``first``..``last`` (inclusive) carry events of one SSE stream."""

    key: str
    first: int
    last: int
    lanes: tuple[str, str]


@dataclass(frozen=True, slots=True)
class Diagram:
    """Lanes, rows, the tokens in order of first appearance, and SSE stream groups."""

    lanes: tuple[str, ...]
    rows: tuple[Row, ...]
    tokens: tuple[str, ...]
    stale: frozenset[str]
    streams: tuple[StreamGroup, ...]
    events: int
    omitted: int = 0

    def token_index(self, token: str) -> int:
        return self.tokens.index(token)


# -- collapsing and grouping -------------------------------------------------------------------


def _collapse(rows: Sequence[Row]) -> list[Row]:
    """Fold stretches where a few alike rows repeat (a burst, a long stream) into one row each.

    A stretch may interleave its rows in any order (concurrent calls do); it ends at a span, at
    a row that would make it too varied, and is cut back to where every kind in it repeats at
    least ``COLLAPSE_MIN`` times, so a one-off (the refresh in the middle of a burst) stays visible.
    """
    out: list[Row] = []
    i, n = 0, len(rows)
    while i < n:
        counts: dict[tuple[Any, ...], int] = {}
        short = 0  # how many signatures seen so far repeat fewer than COLLAPSE_MIN times
        best = -1
        j = i
        while j < n and rows[j].kind != "span":
            sig = rows[j].signature
            if sig not in counts:
                if len(counts) == COLLAPSE_KINDS:
                    break
                counts[sig] = 0
                short += 1
            counts[sig] += 1
            if counts[sig] == COLLAPSE_MIN:
                short -= 1
            j += 1
            if short == 0:
                best = j
        if best < 0:
            out.append(rows[i])
            i += 1
            continue
        merged: dict[tuple[Any, ...], Row] = {}
        positions: dict[tuple[Any, ...], int] = {}
        for position, row in enumerate(rows[i:best]):
            sig = row.signature
            first = merged.get(sig)
            merged[sig] = (
                row
                if first is None
                else replace(first, count=first.count + row.count, seqs=first.seqs + row.seqs)
            )
            positions[sig] = position
        # Ordered by last occurrence: a stretch can hold the tail of one phase and the start of
        # the next (the last stale sends, then the replays and fresh calls); each phase ends
        # before the next does, and every request still precedes its answer.
        out.extend(sorted(merged.values(), key=lambda r: positions[r.signature]))
        i = best
    return [
        replace(r, detail=f"{r.count} alike events, #{r.seqs[0]}…#{r.seqs[-1]}; first: {r.detail}")
        if r.count > 1
        else r
        for r in out
    ]


def _cap(rows: list[Row], max_rows: int) -> tuple[list[Row], int]:
    if len(rows) <= max_rows:
        return rows, 0
    head, tail = rows[: max_rows // 2], rows[len(rows) - max_rows // 2 :]
    omitted = len(rows) - len(head) - len(tail)
    gap = Row(
        kind="span",
        source="",
        target="",
        label=f"{omitted} rows left out (the JSON report has every event)",
        tag="info",
        time=tail[0].time,
    )
    return [*head, gap, *tail], omitted


def _stream_groups(rows: Sequence[Row], lanes: Sequence[str]) -> tuple[StreamGroup, ...]:
    spans: dict[str, list[int]] = {}
    reach: dict[str, set[int]] = {}
    for index, row in enumerate(rows):
        if row.stream is None:
            continue
        spans.setdefault(row.stream, []).append(index)
        reach.setdefault(row.stream, set()).update(
            lanes.index(lane) for lane in (row.source, row.target) if lane in lanes
        )
    return tuple(
        StreamGroup(
            key=key,
            first=indexes[0],
            last=indexes[-1],
            lanes=(lanes[min(reach[key])], lanes[max(reach[key])]),
        )
        for key, indexes in spans.items()
    )


def build_diagram(
    events: Iterable[Event],
    pins: Mapping[int, Sequence[str]] | None = None,
    *,
    max_rows: int = MAX_ROWS,
) -> Diagram:
    """The diagram of a timeline. ``pins`` maps event numbers to the failed checks about them."""
    ordered = sorted(events, key=lambda e: e.seq)
    rows, omitted = _cap(
        _collapse(translate(ordered, {k: tuple(v) for k, v in (pins or {}).items()})), max_rows
    )
    used = {lane for row in rows for lane in (row.source, row.target) if lane}
    lanes = tuple(
        lane
        for lane in LANES
        if lane in used or lane in ("client", "mcp") or (lane == "as" and "as" in used)
    )
    # Spans cross all lanes; other rows' lanes must exist even if only a span mentioned them.
    rows = [r for r in rows if r.kind == "span" or (r.source in lanes and r.target in lanes)]
    tokens = tuple(dict.fromkeys(t for row in rows for t in row.tokens))
    return Diagram(
        lanes=lanes,
        rows=tuple(rows),
        tokens=tokens,
        stale=frozenset(t for row in rows for t in row.stale),
        streams=_stream_groups(rows, lanes),
        events=len(ordered),
        omitted=omitted,
    )


# -- the text renderer -------------------------------------------------------------------------

_TEXT_GAP = 10


def format_diagram(diagram: Diagram) -> str:
    """The diagram for a terminal or a CI log: one line per row, lanes as columns."""
    columns = {lane: 2 + i * _TEXT_GAP for i, lane in enumerate(diagram.lanes)}
    width = 2 + (len(diagram.lanes) - 1) * _TEXT_GAP + 1
    header = [" "] * width
    for lane, col in columns.items():
        name = {"client": "client", "proxy": "proxy", "mcp": "mcp", "as": "auth"}[lane]
        start = max(0, min(col - len(name) // 2, width - len(name)))
        header[start : start + len(name)] = name
    lines = [f"{'':>12} {''.join(header)}"]
    for row in diagram.rows:
        cells = [" "] * width
        for col in columns.values():
            cells[col] = "|"
        if row.kind == "span":
            cells = ["="] * width
        elif row.kind == "mark":
            cells[columns[row.source]] = "*"
        else:
            a, b = columns[row.source], columns[row.target]
            lo, hi = min(a, b), max(a, b)
            for x in range(lo + 1, hi):
                cells[x] = "-"
            if b > a:
                cells[b - 1] = ">"
            else:
                cells[b + 1] = "<"
        label = row.label
        if row.tokens:
            label += " " + " ".join(
                f"[{t} STALE]" if t in row.stale else f"[{t}]" for t in row.tokens
            )
        if row.count > 1:
            label += f" x {row.count}"
        if row.stream is not None:
            label += f" (stream {row.stream})"
        if row.pins:
            label += "   <<< " + ", ".join(row.pins)
        when = f"{row.time:+.3f}s"
        lines.append(f"{'>>' if row.pins else '  '}{when:>10} {''.join(cells)}  {label}")
    return "\n".join(lines)
