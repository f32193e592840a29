"""Fault plans: declarative ``(match, action, times)`` entries the fakes consult on every request.

A plan is plain data. :meth:`FaultPlan.to_dict` and :meth:`FaultPlan.from_dict` round-trip it
through JSON-compatible dicts, which is how scenario files, Hypothesis strategies and the HTTP
control endpoints hand faults to a running fake.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from freshtoken._errors import ConfigError

__all__ = [
    "ACTION_KINDS",
    "STREAM_ACTION_KINDS",
    "TERMINAL_ACTION_KINDS",
    "Action",
    "Fault",
    "FaultPlan",
    "Match",
    "RequestFacts",
]

# Each kind maps to the parameters it accepts: name -> (type check, default).
_PARAMS: Final[dict[str, dict[str, tuple[type | tuple[type, ...], Any]]]] = {
    "rotate": {},
    "expire": {},
    "revoke": {},
    "status-401": {},
    "auth-failed-200": {"shape": (str, "jsonrpc")},
    "status-403-scope": {"scope": (str, "mcp")},
    "status-400": {},
    "status-5xx": {"status": (int, 503)},
    "cut-stream": {"mode": (str, "close")},
    "drop-sessions": {},
    "delay": {"seconds": ((int, float), 1.0)},
    "garbage-chunk": {},
    "response-mode": {"mode": (str, "sse")},
}
_CHOICES: Final[dict[tuple[str, str], tuple[str, ...]]] = {
    ("auth-failed-200", "shape"): ("jsonrpc", "posthog", "tool-error"),
    ("cut-stream", "mode"): ("close", "reset"),
    ("response-mode", "mode"): ("json", "sse"),
}

ACTION_KINDS: Final[frozenset[str]] = frozenset(_PARAMS)
"""Every action kind a fault may name."""

TERMINAL_ACTION_KINDS: Final[frozenset[str]] = frozenset(
    {"status-401", "auth-failed-200", "status-403-scope", "status-400", "status-5xx"}
)
"""Kinds that answer the request themselves; at most one fires per request."""

STREAM_ACTION_KINDS: Final[frozenset[str]] = frozenset({"cut-stream", "garbage-chunk"})
"""Kinds that act on an SSE stream; they force an SSE response and fire at an event position."""

_MATCH_FIELDS: Final = (
    "http_method",
    "rpc_method",
    "tool",
    "request_count",
    "sse_event",
    "at_time",
)


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a fault may match on about one inbound request."""

    http_method: str
    rpc_method: str | None = None
    tool: str | None = None
    time: float = 0.0


@dataclass(frozen=True, slots=True)
class Match:
    """Which requests (or stream positions) a fault applies to; ``None`` fields match anything.

    ``request_count`` selects the Nth request (1-based) that matches the other request fields;
    a fault with ``times > 1`` keeps firing on the following matching requests. ``sse_event``
    fires on a stream after N message events have been written to it. ``at_time`` matches once
    the fake's clock reads at least that time.
    """

    http_method: str | None = None
    rpc_method: str | None = None
    tool: str | None = None
    request_count: int | None = None
    sse_event: int | None = None
    at_time: float | None = None

    def matches(self, facts: RequestFacts) -> bool:
        """True when every request-level field set on this match agrees with ``facts``."""
        return (
            (self.http_method is None or self.http_method.upper() == facts.http_method.upper())
            and (self.rpc_method is None or self.rpc_method == facts.rpc_method)
            and (self.tool is None or self.tool == facts.tool)
            and (self.at_time is None or facts.time >= self.at_time)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            name: getattr(self, name) for name in _MATCH_FIELDS if getattr(self, name) is not None
        }

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "match") -> Match:
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: must be a table/object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_MATCH_FIELDS))
        if unknown:
            raise ConfigError(
                f"{where}.{unknown[0]}: unknown match field (expected one of {', '.join(_MATCH_FIELDS)})"
            )
        values: dict[str, Any] = {}
        for name in ("http_method", "rpc_method", "tool"):
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{where}.{name}: must be a string, got {value!r}")
            values[name] = value
        for name, minimum in (("request_count", 1), ("sse_event", 0)):
            value = data.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < minimum
            ):
                raise ConfigError(f"{where}.{name}: must be an integer >= {minimum}, got {value!r}")
            values[name] = value
        at_time = data.get("at_time")
        if at_time is not None and (
            isinstance(at_time, bool) or not isinstance(at_time, int | float)
        ):
            raise ConfigError(f"{where}.at_time: must be a number, got {at_time!r}")
        values["at_time"] = None if at_time is None else float(at_time)
        return cls(**values)


class Action:
    """What a fault does: a kind from :data:`ACTION_KINDS` plus that kind's parameters.

    Unknown kinds, unknown parameters and badly typed values raise :class:`ConfigError`
    at construction, so a bad plan fails where it is written, not where it fires.
    """

    __slots__ = ("kind", "params")

    def __init__(self, kind: str, **params: Any) -> None:
        self.kind = kind
        self.params: dict[str, Any] = _validated_params(kind, params, where="action")

    def get(self, name: str) -> Any:
        """The value of parameter ``name`` (its default when not given)."""
        return self.params[name]

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"Action({self.kind!r}{args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Action) and other.kind == self.kind and other.params == self.params

    def __hash__(self) -> int:
        return hash((self.kind, tuple(sorted(self.params.items()))))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.params}

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "action") -> Action:
        if isinstance(data, str):
            data = {"kind": data}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: must be a table/object or a kind string, got {data!r}")
        kind = data.get("kind")
        if not isinstance(kind, str):
            raise ConfigError(f"{where}.kind: missing or not a string")
        params = {k: v for k, v in data.items() if k != "kind"}
        action = cls.__new__(cls)
        action.kind = kind
        action.params = _validated_params(kind, params, where=where)
        return action


def _validated_params(kind: str, params: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    if kind not in _PARAMS:
        raise ConfigError(
            f"{where}.kind: unknown action {kind!r} (expected one of {', '.join(sorted(_PARAMS))})"
        )
    spec = _PARAMS[kind]
    unknown = sorted(set(params) - set(spec))
    if unknown:
        accepted = ", ".join(spec) or "none"
        raise ConfigError(
            f"{where}.{unknown[0]}: unknown parameter for {kind!r} (accepted: {accepted})"
        )
    out: dict[str, Any] = {}
    for name, (types, default) in spec.items():
        value = params.get(name, default)
        if isinstance(value, bool) or not isinstance(value, types):
            raise ConfigError(f"{where}.{name}: bad value {value!r} for {kind!r}")
        choices = _CHOICES.get((kind, name))
        if choices is not None and value not in choices:
            raise ConfigError(f"{where}.{name}: must be one of {', '.join(choices)}, got {value!r}")
        out[name] = value
    if kind == "status-5xx" and not 500 <= out["status"] <= 599:
        raise ConfigError(f"{where}.status: must be 500..599, got {out['status']!r}")
    if kind == "delay" and out["seconds"] < 0:
        raise ConfigError(f"{where}.seconds: must be >= 0, got {out['seconds']!r}")
    return out


@dataclass(slots=True)
class Fault:
    """One plan entry: when ``match`` holds, perform ``action``, at most ``times`` times (``None``: always)."""

    match: Match
    action: Action
    times: int | None = 1
    seen: int = field(default=0, compare=False)
    fired: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.times is not None and (
            isinstance(self.times, bool) or not isinstance(self.times, int) or self.times < 1
        ):
            raise ConfigError(f"fault.times: must be an integer >= 1 or null, got {self.times!r}")

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    @property
    def on_stream(self) -> bool:
        """Whether this fault fires at a stream position rather than at request start."""
        return self.match.sse_event is not None or self.action.kind in STREAM_ACTION_KINDS

    @property
    def stream_position(self) -> int:
        return self.match.sse_event if self.match.sse_event is not None else 0

    def to_dict(self) -> dict[str, Any]:
        return {"match": self.match.to_dict(), "action": self.action.to_dict(), "times": self.times}

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "fault") -> Fault:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: must be a table/object, got {type(data).__name__}")
        unknown = sorted(set(data) - {"match", "action", "times"})
        if unknown:
            raise ConfigError(
                f"{where}.{unknown[0]}: unknown field (expected match, action, times)"
            )
        if "action" not in data:
            raise ConfigError(f"{where}.action: missing")
        times = data.get("times", 1)
        if times is not None and (
            isinstance(times, bool) or not isinstance(times, int) or times < 1
        ):
            raise ConfigError(f"{where}.times: must be an integer >= 1 or null, got {times!r}")
        return cls(
            match=Match.from_dict(data.get("match"), where=f"{where}.match"),
            action=Action.from_dict(data["action"], where=f"{where}.action"),
            times=times,
        )


class FaultPlan:
    """An ordered, thread-safe list of :class:`Fault` entries, mutable while a fake runs."""

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = list(faults)

    def add(self, fault: Fault) -> Fault:
        """Append ``fault`` and return it (its ``fired`` count shows whether it has fired)."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def __iter__(self) -> Iterator[Fault]:
        return iter(self.faults)

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)

    def on_request(self, facts: RequestFacts) -> tuple[list[Fault], list[Fault]]:
        """Count ``facts`` against every fault; return (faults firing now, faults armed for its stream).

        Request-phase faults that fire are consumed here; at most one terminal action fires.
        Stream-phase faults whose request fields match are returned armed; they are consumed
        by :meth:`fire_on_stream` when the stream reaches their position.
        """
        firing: list[Fault] = []
        armed: list[Fault] = []
        terminal = False
        with self._lock:
            for fault in self._faults:
                if fault.exhausted or not fault.match.matches(facts):
                    continue
                fault.seen += 1
                if fault.match.request_count is not None and fault.seen < fault.match.request_count:
                    continue
                if fault.on_stream:
                    armed.append(fault)
                    continue
                if fault.action.kind in TERMINAL_ACTION_KINDS:
                    if terminal:
                        continue
                    terminal = True
                fault.fired += 1
                firing.append(fault)
        return firing, armed

    def fire_on_stream(self, armed: Iterable[Fault], position: int) -> list[Fault]:
        """Consume and return the armed faults due at stream ``position`` (events written so far)."""
        due: list[Fault] = []
        with self._lock:
            for fault in armed:
                if fault.stream_position == position and not fault.exhausted:
                    fault.fired += 1
                    due.append(fault)
        return due

    def to_dict(self) -> dict[str, Any]:
        return {"faults": [fault.to_dict() for fault in self.faults]}

    @classmethod
    def from_dict(cls, data: Any) -> FaultPlan:
        """Build a plan from ``{"faults": [...]}`` or a bare list of fault entries.

        Raises :class:`ConfigError` naming the offending entry and field.
        """
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - {"faults"})
            if unknown:
                raise ConfigError(f"fault plan.{unknown[0]}: unknown field (expected faults)")
            data = data.get("faults", [])
        if not isinstance(data, list):
            raise ConfigError(f"fault plan.faults: must be a list, got {type(data).__name__}")
        return cls(Fault.from_dict(entry, where=f"faults[{i}]") for i, entry in enumerate(data))
