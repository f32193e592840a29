"""The fake MCP server's foundation: its settings and state, the request guard, the shared
response helpers and the side effects faults have.

:class:`~freshtoken.fakes.FakeMCPServer` is built in layers, one module each: this base, the SSE
writer (``_mcp_sse``), auth rejection (``_mcp_rejections``) and the transport itself
(``_mcp_server``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import ssl
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from aiohttp import web

from freshtoken._clock import Clock, SystemClock
from freshtoken._errors import ConfigError, ServerSideError
from freshtoken._serve import LoopbackSite, is_loopback_host
from freshtoken._setup import (
    AUTH_FAILURE_STYLES,
    RESPONSE_MODES,
    STREAM_AUTH_MODES,
    ResponseMode,
    StreamAuth,
)
from freshtoken._timeline import Timeline
from freshtoken.fakes._fault_plan import FaultPlan, FaultState
from freshtoken.fakes._faults import Action, Delay
from freshtoken.fakes._mcp_auth import Validator
from freshtoken.fakes._mcp_builtins import BUILTINS
from freshtoken.fakes._mcp_protocol import (
    HANDSHAKE_VERSIONS,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    MODERN_VERSIONS,
    RpcError,
    error_message,
)
from freshtoken.fakes._mcp_registry import (
    DEFAULT_PAGE_SIZE,
    Registry,
)
from freshtoken.fakes._mcp_streams import MAX_STREAMS_PER_SESSION, Session, Stream
from freshtoken.fakes._oauth_app import FakeAuthorizationServer
from freshtoken.fakes._oauth_core import OAuthCore

__all__ = [
    "ACTOR",
    "DEFAULT_SCOPE",
    "SSE_HEADERS",
    "Answered",
    "Exchange",
    "Listener",
    "McpServerBase",
    "Pending",
    "accepts",
    "bearer",
    "host_name",
]

ACTOR: Final = "mcp"
DEFAULT_SCOPE: Final = "mcp"
SSE_HEADERS: Final = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


@dataclass(slots=True)
class Exchange:
    """Everything known about one inbound HTTP request while it is being answered."""

    request: web.Request
    http_method: str
    token: str | None
    rpc_method: str | None = None
    tool: str | None = None
    prompt: str | None = None
    resource: str | None = None
    response_to: str | None = None
    """For a client's response to a server request: that request's method."""
    rpc_id: Any = None
    session: Session | None = None
    mode: str = "sse"
    armed: list[FaultState] = field(default_factory=list)

    @property
    def request_id(self) -> str | None:
        return None if self.rpc_id is None else str(self.rpc_id)


@dataclass(slots=True)
class Pending:
    """A request the server sent its client, waiting for the client's answer."""

    method: str
    session: str | None
    answer: asyncio.Future[dict[str, Any]]


@dataclass(slots=True)
class Listener:
    """A 2026-07-28 ``subscriptions/listen`` stream and the notifications it opted in to."""

    request_id: Any
    notifications: dict[str, Any]
    stream: Stream
    written: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once its response is over (so shutting down can wait for the closing result)."""


class Answered(Exception):
    """Raised inside a handler to answer at once with ``response``."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__()
        self.response = response


def media_types(header: str) -> set[str]:
    return {part.split(";")[0].strip().lower() for part in header.split(",") if part.strip()}


def accepts(request: web.Request) -> tuple[bool, bool]:
    types = media_types(request.headers.get("Accept", ""))
    wildcard = "*/*" in types
    return (
        wildcard or "application/json" in types or "application/*" in types,
        wildcard or "text/event-stream" in types or "text/*" in types,
    )


def host_name(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class McpServerBase:
    """Settings, state and shared helpers of the fake MCP server (see ``FakeMCPServer``)."""

    def __init__(
        self,
        *,
        authorization_server: FakeAuthorizationServer | OAuthCore | None = None,
        validation: Literal["in-process", "introspection"] = "in-process",
        protocol_version: str = "2025-11-25",
        response_mode: ResponseMode = "sse",
        auth_failure_style: str = "401",
        stream_auth: StreamAuth = "start",
        faults: FaultPlan | None = None,
        clock: Clock | None = None,
        timeline: Timeline | None = None,
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body: int = 1 << 20,
        allowed_origins: Collection[str] = (),
        required_scopes: Collection[str] = (),
        introspection_ssl_context: ssl.SSLContext | None = None,
        sse_retry_ms: int = 100,
        page_size: int = DEFAULT_PAGE_SIZE,
        client_timeout: float = 60.0,
        max_sessions: int = 1000,
        max_streams_per_session: int = MAX_STREAMS_PER_SESSION,
        include: Sequence[Registry] = (),
    ) -> None:
        if protocol_version not in HANDSHAKE_VERSIONS + MODERN_VERSIONS:
            raise ConfigError(
                f"protocol_version: unsupported {protocol_version!r} "
                f"(expected one of {', '.join(HANDSHAKE_VERSIONS + MODERN_VERSIONS)})"
            )
        if response_mode not in RESPONSE_MODES:
            raise ConfigError(f"response_mode: must be json or sse, got {response_mode!r}")
        if auth_failure_style not in AUTH_FAILURE_STYLES:
            raise ConfigError(
                f"auth_failure_style: unknown {auth_failure_style!r} "
                f"(expected one of {', '.join(AUTH_FAILURE_STYLES)})"
            )
        if stream_auth not in STREAM_AUTH_MODES:
            raise ConfigError(
                f"stream_auth: must be start, event-error or cut, got {stream_auth!r}"
            )
        if validation not in ("in-process", "introspection"):
            raise ConfigError(
                f"validation: must be in-process or introspection, got {validation!r}"
            )
        self._as: FakeAuthorizationServer | None = None
        self._core: OAuthCore | None = None
        if isinstance(authorization_server, FakeAuthorizationServer):
            self._as = authorization_server
            self._core = authorization_server.core
        else:
            self._core = authorization_server
        if validation == "introspection" and self._as is None:
            raise ConfigError(
                "validation: 'introspection' needs a running FakeAuthorizationServer, not a bare core"
            )
        for name, value in (
            ("max_body", max_body),
            ("page_size", page_size),
            ("max_sessions", max_sessions),
            ("max_streams_per_session", max_streams_per_session),
            ("sse_retry_ms", sse_retry_ms),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: must be a whole number >= 1, got {value!r}")
        if (
            isinstance(client_timeout, bool)
            or not isinstance(client_timeout, int | float)
            or not 0 < client_timeout < math.inf
        ):
            raise ConfigError(
                f"client_timeout: must be a finite number > 0, got {client_timeout!r}"
            )
        self._validation = validation
        self.protocol_version = protocol_version
        self.response_mode = response_mode
        self.auth_failure_style = auth_failure_style
        self.stream_auth = stream_auth
        self.faults = faults if faults is not None else FaultPlan()
        # Sharing the AS's clock and timeline keeps one story of what happened, in one time.
        self.clock: Clock = (
            clock
            if clock is not None
            else self._core.clock
            if self._core is not None
            else SystemClock()
        )
        # "is not None", not "or": an empty timeline is falsy (it has a length).
        self.timeline: Timeline = (
            timeline
            if timeline is not None
            else self._core.timeline
            if self._core is not None
            else Timeline(self.clock)
        )
        self._ssl = ssl_context
        self._host = host
        self._port = port
        self._max_body = max_body
        self._allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        self._required_scopes = frozenset(required_scopes)
        self._introspection_ssl = introspection_ssl_context
        self._retry_ms = sse_retry_ms
        self._client_timeout = float(client_timeout)
        self._max_sessions = max_sessions
        self._max_streams = max_streams_per_session
        self._validator: Validator | None = None
        self._sessions: dict[str, Session] = {}
        self._streams = itertools.count(1)
        self._errors: list[BaseException] = []
        self._error_count = 0
        self._site: LoopbackSite | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._requests = 0
        # The JSON-RPC methods, tools, resources and prompts this server answers: its own copy
        # of the built-ins.
        self._registry: Registry = BUILTINS.copy()
        self._registry.page_size = page_size
        for extra in include:
            self._registry.include(extra)
        self._controls: dict[tuple[str, str], Callable[[web.Request], Awaitable[web.Response]]] = {}
        # Talking back to clients: server requests awaiting an answer (by the id the server
        # gave them), requests still running (by session and JSON-RPC id, for cancellation),
        # and 2026-07-28 subscriptions/listen streams.
        self._pending: dict[str, Pending] = {}
        self._running: dict[tuple[str | None, str], asyncio.Task[Any]] = {}
        self._listeners: dict[int, Listener] = {}
        self._asks = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def base_url(self) -> str:
        if self._site is None:
            raise RuntimeError("FakeMCPServer is not running")
        return self._site.url

    @property
    def url(self) -> str:
        """The MCP endpoint."""
        return f"{self.base_url}/mcp"

    @property
    def resource_metadata_url(self) -> str:
        return f"{self.base_url}/.well-known/oauth-protected-resource/mcp"

    @property
    def control_url(self) -> str:
        return f"{self.base_url}/_freshtoken"

    @property
    def sessions(self) -> list[str]:
        """Ids of the live sessions."""
        return list(self._sessions)

    def _add_session(self, session: Session) -> None:
        self._sessions[session.id] = session
        # A client that never DELETEs its sessions must not grow the server without bound.
        while len(self._sessions) > self._max_sessions:
            oldest = next(iter(self._sessions))
            self._sessions.pop(oldest).close()
            self.timeline.record(ACTOR, "session.evicted", session=oldest)

    def drop_sessions(self) -> None:
        """Forget every session, as a restarted server would; their open streams end."""
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            session.close()
            self.timeline.record(ACTOR, "session.dropped", session=session.id)

    def check(self) -> None:
        """Raise :class:`ServerSideError` if a handler crashed since the server started."""
        if self._errors:
            first = self._errors[0]
            raise ServerSideError(
                f"fake MCP server handler crashed ({self._error_count} error(s)): {first!r}"
            ) from first

    def _crashed(self, exc: BaseException) -> None:
        # The first few are kept to re-raise; the rest only counted, so a long run stays small.
        self._error_count += 1
        if len(self._errors) < 10:
            self._errors.append(exc)
        self.timeline.record(ACTOR, "server.error", error=repr(exc))

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        host = request.headers.get("Host", "")
        if not is_loopback_host(host_name(host)):
            return self._refuse(request, f"non-loopback Host {host!r}")
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin):
            return self._refuse(request, f"foreign Origin {origin!r}")
        try:
            response: web.StreamResponse = await handler(request)
        except Answered as answered:
            return answered.response
        except (web.HTTPException, ConnectionError):
            # A client that went away is not a server crash.
            raise
        except Exception as exc:
            self._crashed(exc)
            return web.json_response(
                error_message(None, RpcError(INTERNAL_ERROR, "Internal error")), status=500
            )
        return response

    def _origin_allowed(self, origin: str) -> bool:
        if origin.rstrip("/").lower() in self._allowed_origins:
            return True
        hostname = urlsplit(origin).hostname
        return hostname is not None and is_loopback_host(hostname)

    def _refuse(self, request: web.Request, reason: str) -> web.Response:
        self.timeline.record(
            ACTOR, "response", status=403, mode="json", http_method=request.method, reason=reason
        )
        return web.json_response(
            error_message(None, RpcError(INVALID_REQUEST, f"Forbidden: {reason}")), status=403
        )

    def _json(
        self,
        ex: Exchange,
        status: int,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        self.timeline.record(
            ACTOR, "response", request_id=ex.request_id, status=status, mode="json"
        )
        return web.json_response(body, status=status, headers=headers)

    def _rpc_error(
        self, ex: Exchange, status: int, code: int, message: str, data: Any = None
    ) -> Answered:
        return Answered(
            self._json(ex, status, error_message(ex.rpc_id, RpcError(code, message, data)))
        )

    def _empty(self, ex: Exchange, status: int, mode: str) -> web.Response:
        self.timeline.record(ACTOR, "response", request_id=ex.request_id, status=status, mode=mode)
        return web.Response(status=status)

    @property
    def _modern(self) -> bool:
        return self.protocol_version in MODERN_VERSIONS

    @property
    def _priming(self) -> bool:
        return self.protocol_version >= "2025-11-25" and not self._modern

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            assert exc is not None
            self._crashed(exc)

    async def _side_effect(self, action: Action, token: str | None) -> None:
        """Do what a non-terminal action does besides being recorded."""
        kind = action.kind
        if isinstance(action, Delay):
            await self.clock.sleep(action.seconds)
        elif kind == "drop-sessions":
            self.drop_sessions()
        elif kind in ("rotate", "expire", "revoke"):
            if self._core is None:
                return
            if kind == "rotate":
                self._core.rotate()
            elif token is not None:
                # A bearer the AS never issued has nothing to expire or revoke.
                with contextlib.suppress(ConfigError):
                    (self._core.expire if kind == "expire" else self._core.revoke_family)(token)
