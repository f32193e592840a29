"""What one entry of a report holds, and which events each failed invariant is about."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from freshtoken._timeline import Event
from freshtoken.scenarios._diagram import Diagram, build_diagram, format_diagram
from freshtoken.scenarios._runner import ScenarioResult

__all__ = ["Outcome", "ReportItem", "diagram_text", "pin_failures"]

Outcome = Literal["passed", "failed", "not applicable"]


@dataclass(frozen=True)
class ReportItem:
    """One scenario run or one test, as a report shows it.

    ``failures`` are ``(invariant or check, reason)`` pairs; ``pins`` map timeline event numbers
    to the failures they are evidence for; ``output`` is extra failure text (a test's traceback).
    """

    name: str
    outcome: Outcome
    events: tuple[Event, ...] = ()
    failures: tuple[tuple[str, str], ...] = ()
    pins: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    subject: str = ""
    duration: float = 0.0
    title: str = ""
    reproduces: str = ""
    protocol_version: str = ""
    output: str = ""

    @classmethod
    def from_result(cls, result: ScenarioResult) -> ReportItem:
        """The report entry of a scenario run, its failed invariants pinned to their events."""
        events = tuple(result.timeline.events)
        failures = tuple((check.name, check.reason) for check in result.failures)
        if result.not_applicable is not None:
            output = f"not applicable: {result.not_applicable}"
        else:
            output = result.output
        return cls(
            name=result.scenario.name,
            outcome=result.outcome,
            output=output,
            events=events,
            failures=failures,
            pins=pin_failures(failures, events, result.scenario.invariants),
            subject=result.subject,
            duration=result.duration,
            title=result.scenario.title,
            reproduces=result.scenario.reproduces,
            protocol_version=str(result.scenario.setup.protocol_version),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for pytest-xdist to carry from a worker); :meth:`from_dict` reads it back."""
        return {
            "name": self.name,
            "outcome": self.outcome,
            "events": [
                {
                    "seq": e.seq,
                    "time": e.time,
                    "actor": e.actor,
                    "kind": e.kind,
                    "request_id": e.request_id,
                    "token": e.token,
                    "status": e.status,
                    "detail": {k: _plain(v) for k, v in e.detail.items()},
                    "elapsed": e.elapsed,
                }
                for e in self.events
            ],
            "failures": [list(pair) for pair in self.failures],
            "pins": [[seq, list(names)] for seq, names in self.pins.items()],
            "subject": self.subject,
            "duration": self.duration,
            "title": self.title,
            "reproduces": self.reproduces,
            "protocol_version": self.protocol_version,
            "output": self.output,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReportItem:
        """The item :meth:`to_dict` described."""
        return cls(
            name=str(data["name"]),
            outcome=data["outcome"],
            events=tuple(Event(**event) for event in data.get("events", ())),
            failures=tuple((str(a), str(b)) for a, b in data.get("failures", ())),
            pins={int(seq): tuple(names) for seq, names in data.get("pins", ())},
            subject=str(data.get("subject", "")),
            duration=float(data.get("duration", 0.0)),
            title=str(data.get("title", "")),
            reproduces=str(data.get("reproduces", "")),
            protocol_version=str(data.get("protocol_version", "")),
            output=str(data.get("output", "")),
        )

    def diagram(self) -> Diagram:
        """This item's timeline as a sequence diagram, failed invariants pinned to their events."""
        return build_diagram(self.events, self.pins)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def diagram_text(entry: ReportItem | ScenarioResult) -> str:
    """The sequence diagram of a run as text, for a terminal or a CI log."""
    item = entry if isinstance(entry, ReportItem) else ReportItem.from_result(entry)
    return format_diagram(item.diagram())


def _is(actor: str, *kinds: str) -> Callable[[Event], bool]:
    return lambda e: e.actor == actor and e.kind in kinds


def _beyond(limit: int | None, events: list[Event]) -> list[Event]:
    """The events past an allowed count: the ones that broke the limit."""
    return events[limit or 0 :] if limit is not None and len(events) > limit else events


def _sends_beyond(limit: int | None, events: Sequence[Event]) -> list[Event]:
    per_call: dict[str, list[Event]] = {}
    for e in events:
        is_call = e.actor == "mcp" and e.kind == "request" and e.request_id is not None
        if is_call and e.detail.get("rpc_method") == "tools/call":
            per_call.setdefault(str(e.request_id), []).append(e)
    allowed = 1 if limit is None else limit
    return [e for sends in per_call.values() if len(sends) > allowed for e in sends[allowed:]]


def _evidence(name: str, events: Sequence[Event], invariants: Any) -> list[Event]:
    def select(predicate: Callable[[Event], bool]) -> list[Event]:
        return [e for e in events if predicate(e)]

    limit = getattr(invariants, name, None)
    limit = limit if isinstance(limit, int) and not isinstance(limit, bool) else None
    if name == "every_call_answered":
        return select(
            lambda e: (
                (e.actor == "client" and e.kind in ("call.error", "call.abandoned"))
                or (e.actor == "runner" and e.kind.endswith("timeout"))
            )
        )
    if name == "status_passed_through":
        return select(
            lambda e: (
                e.actor == "client" and e.kind in ("call.result", "call.error") and e.status != 200
            )
        )
    if name in ("max_token_requests", "no_refresh"):
        return _beyond(limit, select(_is("as", "token.request")))
    if name == "no_refresh_reuse":
        return select(_is("as", "refresh.reuse"))
    if name == "max_upstream_sends_per_call" or "replay" in name:
        return _sends_beyond(limit, events)
    if name == "max_upstream_sends":
        return _beyond(limit, select(_is("mcp", "request")))
    if name == "max_auth_rejections":
        return _beyond(limit, select(_is("mcp", "auth.rejected")))
    if name == "sse_in_order":
        return select(
            lambda e: (
                (e.actor == "client" and e.kind in ("sse.event", "stream.cut"))
                or (e.actor == "mcp" and e.kind == "sse.cut")
            )
        )
    if name == "upstream_cancelled":
        return select(
            lambda e: (
                (e.actor == "client" and e.kind == "call.abandoned")
                or (e.actor in ("proxy", "mcp") and e.kind in ("stream.end", "stream.cancelled"))
            )
        )
    if name == "no_hang":
        return select(
            lambda e: (
                e.kind.endswith("timeout")
                or (e.actor == "client" and e.kind == "command.exit" and bool(e.status))
            )
        )
    if name == "no_relogin":
        return select(
            lambda e: (
                _is("as", "token.request")(e) and e.detail.get("grant_type") == "authorization_code"
            )
        )
    if name == "command":
        return select(lambda e: e.actor == "client" and e.kind == "command.exit")
    if name == "run":
        return list(events[-1:])
    return []


def pin_failures(
    failures: Sequence[tuple[str, str]], events: Sequence[Event], invariants: Any = None
) -> dict[int, tuple[str, ...]]:
    """For each failed check, the events that show it (an unknown check pins nothing)."""
    pins: dict[int, tuple[str, ...]] = {}
    for name, _reason in failures:
        for event in _evidence(name, events, invariants):
            pins[event.seq] = (*pins.get(event.seq, ()), name)
    return pins
