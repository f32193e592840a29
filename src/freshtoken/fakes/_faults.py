"""Fault specs: which requests a fault matches, what it does, how many times.

A spec is immutable data: :class:`Match`, one action class per kind (the :data:`Action` tagged
union, discriminated by ``kind``) and :class:`Fault`. How often a fault has fired lives apart, in
the :class:`~freshtoken.fakes.FaultPlan` of the server it was added to, so one spec can be added
to many plans (or drawn by Hypothesis) and never changes.

The wire format (scenario files, Hypothesis, the HTTP control endpoints) is the JSON form of
these models; an action may also be written as its bare kind (``action = "rotate"``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import Field, StrictInt, ValidatorFunctionWrapHandler, WrapValidator

from freshtoken._schema import Count, PositiveCount, Seconds, parse
from freshtoken.fakes._spec import Spec

__all__ = [
    "ACTION_KINDS",
    "ACTION_TYPES",
    "STREAM_ACTION_KINDS",
    "TERMINAL_ACTION_KINDS",
    "Action",
    "AuthFailed200",
    "CutStream",
    "Delay",
    "DropSessions",
    "Expire",
    "Fault",
    "GarbageChunk",
    "Match",
    "Revoke",
    "Rotate",
    "SetResponseMode",
    "Status5xx",
    "Status400",
    "Status401",
    "Status403Scope",
]


class _Action(Spec):
    """What every action shares: its ``kind`` tag, its parameters and its wire form."""

    kind: str

    @property
    def params(self) -> dict[str, Any]:
        """The action's parameters (every field but ``kind``), defaults included."""
        return {name: value for name, value in self.to_dict().items() if name != "kind"}

    def to_dict(self) -> dict[str, Any]:
        """The wire form: ``{"kind": ..., <parameter>: ...}``."""
        return self.model_dump(mode="json")

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # The class already names the kind.
        return ((name, value) for name, value in super().__repr_args__() if name != "kind")


class Rotate(_Action):
    """Invalidate every access token at the authorization server now."""

    kind: Literal["rotate"] = "rotate"


class Expire(_Action):
    """Expire the bearer this request carries."""

    kind: Literal["expire"] = "expire"


class Revoke(_Action):
    """Revoke the whole grant family of the bearer this request carries."""

    kind: Literal["revoke"] = "revoke"


class Status401(_Action):
    """Answer 401 with an RFC 6750 ``invalid_token`` challenge."""

    kind: Literal["status-401"] = "status-401"


class AuthFailed200(_Action):
    """Answer 200 whose body says authentication failed, in one of the real-world ``shape``s."""

    kind: Literal["auth-failed-200"] = "auth-failed-200"
    shape: Literal["jsonrpc", "posthog", "tool-error"] = "jsonrpc"


class Status403Scope(_Action):
    """Answer 403 ``insufficient_scope`` asking for ``scope`` (a step-up, not a refresh)."""

    kind: Literal["status-403-scope"] = "status-403-scope"
    scope: str = "mcp"


class Status400(_Action):
    """Answer 400 where a 401 was due (a server that reports bad tokens as bad requests)."""

    kind: Literal["status-400"] = "status-400"


class Status5xx(_Action):
    """Answer ``status`` (500..599) with a JSON-RPC internal error."""

    kind: Literal["status-5xx"] = "status-5xx"
    status: Annotated[StrictInt, Field(ge=500, le=599)] = 503


class CutStream(_Action):
    """End the SSE stream: ``close`` ends it cleanly, ``reset`` drops the connection."""

    kind: Literal["cut-stream"] = "cut-stream"
    mode: Literal["close", "reset"] = "close"


class DropSessions(_Action):
    """Forget every session, as a restarted server would."""

    kind: Literal["drop-sessions"] = "drop-sessions"


class Delay(_Action):
    """Hold the request ``seconds`` on the fake's clock before going on."""

    kind: Literal["delay"] = "delay"
    seconds: Seconds = 1.0


class GarbageChunk(_Action):
    """Write bytes that are not an SSE event into the stream."""

    kind: Literal["garbage-chunk"] = "garbage-chunk"


class SetResponseMode(_Action):
    """Answer this request as JSON or as SSE, whatever the server's default."""

    kind: Literal["response-mode"] = "response-mode"
    mode: Literal["json", "sse"] = "sse"


_ACTION_CLASSES: Final = (
    Rotate,
    Expire,
    Revoke,
    Status401,
    AuthFailed200,
    Status403Scope,
    Status400,
    Status5xx,
    CutStream,
    DropSessions,
    Delay,
    GarbageChunk,
    SetResponseMode,
)

_AnyAction = (
    Rotate
    | Expire
    | Revoke
    | Status401
    | AuthFailed200
    | Status403Scope
    | Status400
    | Status5xx
    | CutStream
    | DropSessions
    | Delay
    | GarbageChunk
    | SetResponseMode
)

ACTION_TYPES: Final[Mapping[str, Callable[..., _AnyAction]]] = {
    cls.model_fields["kind"].default: cls for cls in _ACTION_CLASSES
}
"""The action class for each kind: ``ACTION_TYPES["status-5xx"](status=502)``."""

_CLASS_OF: Final[Mapping[str, type[_Action]]] = {
    cls.model_fields["kind"].default: cls for cls in _ACTION_CLASSES
}

ACTION_KINDS: Final[frozenset[str]] = frozenset(ACTION_TYPES)
"""Every action kind a fault may name."""

TERMINAL_ACTION_KINDS: Final[frozenset[str]] = frozenset(
    {"status-401", "auth-failed-200", "status-403-scope", "status-400", "status-5xx"}
)
"""Kinds that answer the request themselves; at most one fires per request."""

STREAM_ACTION_KINDS: Final[frozenset[str]] = frozenset({"cut-stream", "garbage-chunk"})
"""Kinds that act on an SSE stream; they force an SSE response and fire at an event position."""


def _pick_action(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # Picking the class by hand (rather than pydantic's tagged-union step) keeps the kind out
    # of error paths: "faults[0].action.status", not "faults[0].action.status-5xx.status".
    if isinstance(value, _ACTION_CLASSES):
        return value
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, Mapping):
        raise ValueError("must be a table with a kind, or a kind name")
    kind = value.get("kind")
    if kind not in ACTION_KINDS:
        expected = ", ".join(sorted(ACTION_KINDS))
        raise ValueError(f"unknown action kind {kind!r} (expected one of {expected})")
    return _CLASS_OF[kind].model_validate(value)


Action = Annotated[_AnyAction, Field(discriminator="kind"), WrapValidator(_pick_action)]
"""What a fault does: one of the action classes, told apart by ``kind``."""


class Match(Spec):
    """Which requests (or stream positions) a fault applies to; unset fields match anything.

    ``request_count`` selects the Nth request (1-based) that matches the other request fields;
    a fault with ``times > 1`` keeps firing on the following matching requests. ``sse_event``
    fires on a stream after N message events have been written to it. ``at_time`` matches once
    the fake's clock reads at least that time. ``prompt`` and ``resource`` match ``prompts/get``
    by name and ``resources/read`` by URI; ``response_to`` matches the POST carrying a client's
    answer to a server request of that method (``"sampling/createMessage"``,
    ``"elicitation/create"``, ``"roots/list"``): a ``rotate`` there makes the token change
    between the server's question and the client's answer.
    """

    http_method: str | None = None
    rpc_method: str | None = None
    tool: str | None = None
    prompt: str | None = None
    resource: str | None = None
    response_to: str | None = None
    request_count: PositiveCount | None = None
    sse_event: Count | None = None
    at_time: Seconds | None = None

    def to_dict(self) -> dict[str, Any]:
        """The wire form, without the fields left unset."""
        return self.model_dump(mode="json", exclude_none=True)


class Fault(Spec):
    """One plan entry: when ``match`` holds, perform ``action``, at most ``times`` times
    (``None``: every time). Immutable: the counts live in the plan it is added to."""

    match: Match = Field(default_factory=Match)
    action: Action
    times: PositiveCount | None = 1

    def __init__(
        self,
        match: Match | None = None,
        action: _AnyAction | None = None,
        times: int | None = 1,
        /,
        **data: Any,
    ) -> None:
        # Positional arguments read as the entry does: Fault(Match(tool="echo"), Status401()).
        if match is not None:
            data["match"] = match
        if action is not None:
            data["action"] = action
        data.setdefault("times", times)
        super().__init__(**data)

    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @property
    def on_stream(self) -> bool:
        """Whether this fault fires at a stream position rather than at request start."""
        return self.match.sse_event is not None or self.action.kind in STREAM_ACTION_KINDS

    @property
    def stream_position(self) -> int:
        return self.match.sse_event if self.match.sse_event is not None else 0

    def to_dict(self) -> dict[str, Any]:
        """The wire form: ``{"match": {...}, "action": {...}, "times": ...}``."""
        return {"match": self.match.to_dict(), "action": self.action.to_dict(), "times": self.times}

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "fault", prefix: str = "") -> Fault:
        """Parse one fault from its wire form; raise :class:`~freshtoken.ConfigError` naming
        ``source`` and the field."""
        fault: Fault = parse(cls, data, source=source, prefix=prefix)
        return fault

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        yield None, self.match
        yield None, self.action
        if self.times != 1:
            yield "times", self.times
