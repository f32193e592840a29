"""The scenario model: plain frozen data, constructible from Python or loaded from TOML."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from freshtoken._setup import Setup

__all__ = [
    "Advance",
    "AuthorizationControl",
    "Burst",
    "Call",
    "Disconnect",
    "Initialize",
    "Invariants",
    "Join",
    "McpFault",
    "OpenGetStream",
    "Restart",
    "Resume",
    "Scenario",
    "Setup",
    "Step",
    "Stream",
    "Wait",
]

Expectation = Literal["result", "error", "any"]


@dataclass(frozen=True)
class Initialize:
    """The client initializes (and sends ``notifications/initialized``)."""

    kind: ClassVar[str] = "initialize"
    client_step: ClassVar[bool] = True


@dataclass(frozen=True)
class Call:
    """One ``tools/call``. ``expect`` says what the client should end up with.

    ``expect_status`` pins the HTTP status the client must see (e.g. a 403 passed through);
    ``origin``/``host`` send those headers (for DNS-rebinding checks); ``background`` starts the
    call and moves on (join it with a later ``wait`` or at the end of the scenario).
    """

    tool: str = "echo"
    arguments: Mapping[str, Any] = field(default_factory=lambda: {"text": "hello"})
    expect: Expectation = "result"
    expect_status: int | None = None
    origin: str | None = None
    host: str | None = None
    background: bool = False
    kind: ClassVar[str] = "call"
    client_step: ClassVar[bool] = True


@dataclass(frozen=True)
class Stream:
    """Call the ``stream`` tool: ``count`` progress notifications, ``pace`` clock-seconds apart.

    Always runs in the background, because with a manual clock it only moves when time does.
    """

    count: int = 3
    pace: float = 1.0
    expect: Expectation = "result"
    kind: ClassVar[str] = "stream"
    client_step: ClassVar[bool] = True


@dataclass(frozen=True)
class Burst:
    """``n`` concurrent ``tools/call`` requests, all expected to end with a result."""

    n: int = 5
    tool: str = "echo"
    arguments: Mapping[str, Any] = field(default_factory=lambda: {"text": "burst"})
    kind: ClassVar[str] = "burst"
    client_step: ClassVar[bool] = True


@dataclass(frozen=True)
class OpenGetStream:
    """Open the standalone GET SSE stream and keep it open in the background."""

    kind: ClassVar[str] = "open_get_stream"
    client_step: ClassVar[bool] = True


@dataclass(frozen=True)
class Resume:
    """Resume the most recently cut stream by GET with ``Last-Event-ID``, as the transport spec says."""

    kind: ClassVar[str] = "resume"
    client_step: ClassVar[bool] = True


@dataclass(frozen=True)
class Disconnect:
    """The client goes away: every background call still in flight is abandoned mid-response."""

    kind: ClassVar[str] = "disconnect"
    client_step: ClassVar[bool] = True


@dataclass(frozen=True)
class McpFault:
    """Add one fault-plan entry (``freshtoken.fakes.Fault`` as a plain dict) to the fake MCP server."""

    fault: Mapping[str, Any]
    kind: ClassVar[str] = "fault"
    client_step: ClassVar[bool] = False


AuthorizationAction = Literal["rotate", "expire", "revoke", "fail_next", "replay_refresh"]


@dataclass(frozen=True)
class AuthorizationControl:
    """Drive the fake authorization server.

    ``rotate`` invalidates every access token now; ``expire`` expires the seeded access token;
    ``revoke`` revokes the seeded grant family; ``fail_next`` fails the next ``times`` token requests
    (``status``, ``error``, ``delay``, ``reset``, ``garbage``); ``replay_refresh`` presents the
    seeded refresh token again, as a leaked or stale copy would (reuse detection).
    """

    action: AuthorizationAction
    times: int = 1
    status: int = 503
    error: str | None = "temporarily_unavailable"
    delay: float = 0.0
    reset: bool = False
    garbage: bool = False
    kind: ClassVar[str] = "authorization"
    client_step: ClassVar[bool] = False


@dataclass(frozen=True)
class Advance:
    """Move the shared manual clock forward.

    With ``when_sleeping`` it first waits (up to 2 real seconds) until something sleeps on the
    clock, so a stream that has not reached its first pause yet does not miss the tick.
    """

    seconds: float
    when_sleeping: bool = False
    kind: ClassVar[str] = "advance"
    client_step: ClassVar[bool] = False


@dataclass(frozen=True)
class Wait:
    """Wait (bounded, in real seconds) until ``count`` timeline events ``event`` of ``actor`` exist."""

    event: str
    actor: str | None = None
    count: int = 1
    timeout: float = 5.0
    kind: ClassVar[str] = "wait"
    client_step: ClassVar[bool] = False


@dataclass(frozen=True)
class Join:
    """Wait for every background call to finish, advancing the clock ``advance`` seconds at a time
    while something sleeps on it (streams move only when time does). Bounded by ``timeout``."""

    advance: float = 1.0
    timeout: float = 5.0
    kind: ClassVar[str] = "join"
    client_step: ClassVar[bool] = True


@dataclass(frozen=True)
class Restart:
    """The fake MCP server restarts: every session is dropped."""

    kind: ClassVar[str] = "restart"
    client_step: ClassVar[bool] = False


Step = (
    Initialize
    | Call
    | Stream
    | Burst
    | OpenGetStream
    | Resume
    | Disconnect
    | McpFault
    | AuthorizationControl
    | Advance
    | Wait
    | Join
    | Restart
)


@dataclass(frozen=True)
class Invariants:
    """What must hold after the steps ran. ``None`` switches a check off.

    * ``every_call_answered`` — each call ends as its step expected (a result unless told otherwise);
    * ``max_token_requests`` — at most K requests reached the token endpoint;
    * ``no_refresh_reuse`` — the authorization server never saw a superseded refresh token;
    * ``max_upstream_sends_per_call`` — the MCP server saw each client call at most this often
      (2 = the original send plus one replay);
    * ``sse_in_order`` — progress notifications arrived in order with none lost;
    * ``max_duration`` — the whole run finished within this many real seconds (no hang);
    * ``status_passed_through`` — every call with ``expect_status`` saw exactly that status;
    * ``no_refresh`` — no token request at all;
    * ``upstream_cancelled`` — the MCP server saw an abandoned stream cancelled;
    * ``max_upstream_sends`` — the MCP server saw at most this many requests in total;
    * ``max_auth_rejections`` — the MCP server rejected at most this many bearers (0: the subject
      never sent a token it could have known was expired).
    """

    every_call_answered: bool = True
    max_token_requests: int | None = None
    no_refresh_reuse: bool = True
    max_upstream_sends_per_call: int | None = 2
    sse_in_order: bool = True
    max_duration: float = 10.0
    status_passed_through: bool = True
    no_refresh: bool = False
    upstream_cancelled: bool = False
    max_upstream_sends: int | None = None
    max_auth_rejections: int | None = None


@dataclass(frozen=True)
class Scenario:
    """A named, reproducible token-rotation situation: setup, steps, invariants.

    ``reproduces`` names the public bug (``repo#number``) or the spec clause it stands for.
    """

    name: str
    steps: tuple[Step, ...]
    title: str = ""
    reproduces: str = ""
    setup: Setup = field(default_factory=Setup)
    invariants: Invariants = field(default_factory=Invariants)
    source: str | None = None
