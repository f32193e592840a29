"""Timeline events to diagram rows: which hop, mark or span each event is, and which tokens
were stale when they were sent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from freshtoken._timeline import Event
from freshtoken.scenarios._event_table import HANDLERS
from freshtoken.scenarios._rows import LANES, Row, RowKind, scrub

__all__ = ["Translator", "translate"]

# -- events to rows ----------------------------------------------------------------------------


@dataclass
class _State:
    has_proxy: bool
    has_client_sends: bool
    has_mcp: bool
    start: float
    pins: Mapping[int, tuple[str, ...]]
    tools: dict[str, str] = field(default_factory=dict)
    streams_by_request: dict[str, str] = field(default_factory=dict)
    seen_calls: set[tuple[str | None, str]] = field(default_factory=set)
    pending_replays: dict[str | None, int] = field(default_factory=dict)
    runner_refresh: str | None = None
    presented: list[str] = field(default_factory=list)
    get_stream: str = "GET"
    token_origin: str = "client"
    access: set[str] = field(default_factory=set)
    families: dict[str, set[str]] = field(default_factory=dict)
    expires: dict[str, float] = field(default_factory=dict)
    dead: set[str] = field(default_factory=set)
    expired_shown: set[str] = field(default_factory=set)

    @property
    def client_hop(self) -> str:
        return "proxy" if self.has_proxy else "mcp"

    @property
    def upstream_caller(self) -> str:
        return "proxy" if self.has_proxy else "client"


class Translator:
    def __init__(self, events: Sequence[Event], pins: Mapping[int, tuple[str, ...]]) -> None:
        actors = {e.actor for e in events}
        self.state = _State(
            has_proxy="proxy" in actors,
            has_client_sends=any(e.actor == "client" and e.kind == "send" for e in events),
            has_mcp="mcp" in actors,
            start=events[0].time if events else 0.0,
            pins=pins,
        )
        self.rows: list[Row] = []
        for event in events:
            if event.actor == "mcp" and event.kind == "sse.event" and event.request_id:
                self.state.streams_by_request.setdefault(
                    event.request_id, str(event.detail.get("stream", "?"))
                )

    # One helper per row shape keeps the event table below readable.
    def _row(
        self, event: Event, kind: RowKind, source: str, target: str, label: str, **kw: Any
    ) -> None:
        tokens = tuple(t for t in kw.pop("tokens", (event.token,)) if t)
        stale = (
            tuple(t for t in tokens if self._is_stale(t, event.time))
            if kw.pop("check_stale", False)
            else ()
        )
        self.rows.append(
            Row(
                kind=kind,
                source=source,
                target=target,
                label=scrub(label, 80),
                tokens=tokens,
                stale=stale,
                status=event.status,
                seqs=(event.seq,),
                time=event.time - self.state.start,
                pins=self.state.pins.get(event.seq, ()),
                detail=_detail(event, self.state.start),
                **kw,
            )
        )

    def arrow(self, event: Event, source: str, target: str, label: str, **kw: Any) -> None:
        self._row(event, "arrow", source, target, label, **kw)

    def mark(self, event: Event, lane: str, label: str, **kw: Any) -> None:
        self._row(event, "mark", lane, lane, label, **kw)

    def span(self, event: Event, label: str, **kw: Any) -> None:
        self._row(event, "span", "", "", label, **kw)

    def _is_stale(self, token: str, when: float) -> bool:
        expires = self.state.expires.get(token)
        return token in self.state.dead or (expires is not None and when >= expires)

    def _expiries(self, event: Event) -> None:
        """A token's expiry by the clock is not an event anyone records: draw it where it passed."""
        for token, expires in sorted(self.state.expires.items(), key=lambda kv: kv[1]):
            if event.time >= expires and token not in self.state.expired_shown:
                self.state.expired_shown.add(token)
                if token in self.state.dead:
                    continue
                self.rows.append(
                    Row(
                        kind="span",
                        source="",
                        target="",
                        label=f"expiry: access token {token} ran out (clock +{expires - self.state.start:g} s)",
                        tag="expiry",
                        tokens=(token,),
                        time=expires - self.state.start,
                    )
                )

    def feed(self, event: Event) -> None:
        self._expiries(event)
        handler = HANDLERS.get((event.actor, event.kind))
        if handler is not None:
            handler(self, event)
        elif event.actor in LANES and not event.kind.startswith(("step", "client.registered")):
            self.mark(event, event.actor, event.kind, tag=_tag_for(event))
        elif event.actor not in LANES and event.actor != "runner":
            self.span(event, f"{event.actor}: {event.kind}", tag=_tag_for(event))


def _tag_for(event: Event) -> str:
    if event.status is not None and event.status >= 400:
        return "error"
    if "fault" in event.kind or "error" in event.kind or "timeout" in event.kind:
        return "error"
    return "info"


def _detail(event: Event, start: float) -> str:
    parts = [f"#{event.seq} +{event.time - start:.3f}s {event.actor} {event.kind}"]
    if event.request_id is not None:
        parts.append(f"req={event.request_id}")
    if event.token is not None:
        parts.append(f"token={event.token}")
    if event.status is not None:
        parts.append(f"status={event.status}")
    parts += [f"{key}={value}" for key, value in event.detail.items() if value is not None]
    return scrub(" ".join(parts), 400)


def translate(events: Sequence[Event], pins: Mapping[int, tuple[str, ...]]) -> list[Row]:
    """One row per event worth drawing, in timeline order (events sorted by ``seq``)."""
    translator = Translator(events, pins)
    for event in events:
        translator.feed(event)
    return translator.rows
