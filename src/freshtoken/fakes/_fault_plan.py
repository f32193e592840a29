"""The fault plan a fake MCP server consults on every request, and each entry's run-time count."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from freshtoken._schema import MODEL_CONFIG, parse
from freshtoken.fakes._faults import TERMINAL_ACTION_KINDS, Action, Fault
from freshtoken.fakes._spec import Spec

__all__ = ["FaultPlan", "FaultState", "RequestFacts"]


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a fault may match on about one inbound request."""

    http_method: str
    rpc_method: str | None = None
    tool: str | None = None
    time: float = 0.0
    prompt: str | None = None
    resource: str | None = None
    response_to: str | None = None

    def matches(self, fault: Fault) -> bool:
        """True when every request-level field set on ``fault.match`` agrees with these facts."""
        match = fault.match
        return (
            (match.http_method is None or match.http_method.upper() == self.http_method.upper())
            and (match.rpc_method is None or match.rpc_method == self.rpc_method)
            and (match.tool is None or match.tool == self.tool)
            and (match.prompt is None or match.prompt == self.prompt)
            and (match.resource is None or match.resource == self.resource)
            and (match.response_to is None or match.response_to == self.response_to)
            and (match.at_time is None or self.time >= match.at_time)
        )


@dataclass(eq=False, slots=True)
class FaultState:
    """One fault as added to a plan: the immutable spec and how it has fared so far."""

    fault: Fault
    seen: int = 0
    """Matching requests counted (``request_count`` compares against this)."""
    fired: int = 0

    @property
    def exhausted(self) -> bool:
        return self.fault.times is not None and self.fired >= self.fault.times

    @property
    def remaining(self) -> int | None:
        """How many more times it may fire (``None``: unlimited)."""
        return None if self.fault.times is None else max(0, self.fault.times - self.fired)

    @property
    def action(self) -> Action:
        return self.fault.action

    def to_dict(self) -> dict[str, Any]:
        """The spec's wire form plus ``fired``."""
        return {**self.fault.to_dict(), "fired": self.fired}


class FaultPlan(Spec):
    """An ordered, thread-safe list of :class:`Fault` entries, mutable while a fake runs.

    The plan owns the run-time counts: :meth:`add` returns the entry's :class:`FaultState`,
    whose ``fired`` shows whether (and how often) it fired. Iterating yields the specs.
    """

    model_config = MODEL_CONFIG | ConfigDict(frozen=False)

    faults: list[Fault] = Field(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _states: list[FaultState] = PrivateAttr(default_factory=list)

    def __init__(self, faults: Iterable[Fault] = (), /, **data: Any) -> None:
        data.setdefault("faults", list(faults))
        super().__init__(**data)

    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @model_validator(mode="before")
    @classmethod
    def _bare_list(cls, data: Any) -> Any:
        # A plan may be written as just its list of faults.
        return {"faults": data} if isinstance(data, list) else data

    def model_post_init(self, context: Any, /) -> None:
        self._states = [FaultState(fault) for fault in self.faults]

    def __copy__(self) -> FaultPlan:
        # A copy is an independent plan (its own lock and counts); the specs are immutable,
        # so both plans may share them.
        with self._lock:
            copied = FaultPlan(list(self.faults))
            copied._states = [FaultState(s.fault, seen=s.seen, fired=s.fired) for s in self._states]
        return copied

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> FaultPlan:
        return self.__copy__()

    def add(self, fault: Fault) -> FaultState:
        """Append ``fault``; return its state (its ``fired`` count shows whether it fired)."""
        state = FaultState(fault)
        with self._lock:
            self.faults.append(fault)
            self._states.append(state)
        return state

    def extend(self, faults: Iterable[Fault]) -> list[FaultState]:
        """Append every fault in order; return their states."""
        return [self.add(fault) for fault in faults]

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self._states.clear()

    @property
    def states(self) -> list[FaultState]:
        """Every entry's run-time state, in plan order."""
        with self._lock:
            return list(self._states)

    def __iter__(self) -> Iterator[Fault]:  # type: ignore[override]
        with self._lock:
            return iter(list(self.faults))

    def __len__(self) -> int:
        with self._lock:
            return len(self.faults)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FaultPlan) and list(self) == list(other)

    def on_request(self, facts: RequestFacts) -> tuple[list[FaultState], list[FaultState]]:
        """Count ``facts`` against every fault; return (faults firing now, faults armed for its stream).

        Request-phase faults that fire are consumed here; at most one terminal action fires.
        Stream-phase faults whose request fields match are returned armed; they are consumed
        by :meth:`fire_on_stream` when the stream reaches their position.
        """
        firing: list[FaultState] = []
        armed: list[FaultState] = []
        terminal = False
        with self._lock:
            for state in self._states:
                fault = state.fault
                if state.exhausted or not facts.matches(fault):
                    continue
                state.seen += 1
                if fault.match.request_count is not None and state.seen < fault.match.request_count:
                    continue
                if fault.on_stream:
                    armed.append(state)
                    continue
                if fault.action.kind in TERMINAL_ACTION_KINDS:
                    if terminal:
                        continue
                    terminal = True
                state.fired += 1
                firing.append(state)
        return firing, armed

    def fire_on_stream(self, armed: Iterable[FaultState], position: int) -> list[FaultState]:
        """Consume and return the armed faults due at stream ``position`` (events written so far)."""
        due: list[FaultState] = []
        with self._lock:
            for state in armed:
                if state.fault.stream_position == position and not state.exhausted:
                    state.fired += 1
                    due.append(state)
        return due

    def to_dict(self) -> dict[str, Any]:
        """The wire form of the specs: ``{"faults": [...]}`` (run-time counts left out)."""
        return {"faults": [fault.to_dict() for fault in self]}

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "fault plan") -> FaultPlan:
        """Build a plan from ``{"faults": [...]}`` or a bare list of fault entries.

        Raises :class:`~freshtoken.ConfigError` as ``<source>: faults[i].<field>: <reason>``.
        """
        plan: FaultPlan = parse(cls, data, source=source)
        return plan

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        yield None, list(self)
