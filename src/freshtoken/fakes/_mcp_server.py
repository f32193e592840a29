"""The fake MCP server: Streamable HTTP over aiohttp, misbehaving on request.

Protocol revisions 2025-03-26 / 2025-06-18 / 2025-11-25 use sessions, a GET stream,
resumption and DELETE; 2026-07-28 is stateless (no handshake, ``Mcp-Method``/``Mcp-Name``
headers checked against the body, closing an SSE response cancels its request).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import ssl
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from aiohttp import web

from freshtoken._clock import Clock, SystemClock
from freshtoken._errors import ConfigError, ServerSideError
from freshtoken._lifecycle import AsyncLifecycle
from freshtoken._serve import LoopbackSite, is_loopback_host
from freshtoken._setup import (
    AUTH_FAILURE_STYLES,
    RESPONSE_MODES,
    STREAM_AUTH_MODES,
    ResponseMode,
    StreamAuth,
)
from freshtoken._timeline import Timeline, fingerprint
from freshtoken.fakes._faults import TERMINAL_ACTION_KINDS, Fault, FaultPlan, RequestFacts
from freshtoken.fakes._mcp_auth import (
    BearerCheck,
    InProcessValidator,
    IntrospectionValidator,
    Validator,
)
from freshtoken.fakes._mcp_protocol import (
    CLIENT_CAPABILITIES_META_KEY,
    HANDSHAKE_VERSIONS,
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    MODERN_VERSIONS,
    PARSE_ERROR,
    PROTOCOL_VERSION_META_KEY,
    RESPONSE_MODE_META_KEY,
    UNSUPPORTED_PROTOCOL_VERSION,
    RpcError,
    ToolContext,
    auth_failure_message,
    dispatch,
    error_message,
    result_message,
)
from freshtoken.fakes._mcp_streams import Session, Stream, format_event, parse_event_id
from freshtoken.fakes._oauth_app import FakeAuthorizationServer, reset_connection
from freshtoken.fakes._oauth_core import OAuthCore

__all__ = ["AUTH_FAILURE_STYLES", "FakeMCPServer"]

_ACTOR: Final = "mcp"
_DEFAULT_SCOPE: Final = "mcp"
# Where a modern (2026-07-28) transport maps JSON-RPC error codes to HTTP statuses.
_MODERN_STATUS: Final = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}
_SSE_HEADERS: Final = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_GARBAGE: Final = b"\xff\xfe\x00garbage\x01 not an event\n\n"
_NAME_PARAMS: Final = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


@dataclass(slots=True)
class _Exchange:
    """Everything known about one inbound HTTP request while it is being answered."""

    request: web.Request
    http_method: str
    token: str | None
    rpc_method: str | None = None
    tool: str | None = None
    rpc_id: Any = None
    session: Session | None = None
    mode: str = "json"
    armed: list[Fault] = field(default_factory=list)

    @property
    def request_id(self) -> str | None:
        return None if self.rpc_id is None else str(self.rpc_id)


class _Answered(Exception):
    """Raised inside a handler to answer at once with ``response``."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__()
        self.response = response


def _media_types(header: str) -> set[str]:
    return {part.split(";")[0].strip().lower() for part in header.split(",") if part.strip()}


def _accepts(request: web.Request) -> tuple[bool, bool]:
    types = _media_types(request.headers.get("Accept", ""))
    wildcard = "*/*" in types
    return (
        wildcard or "application/json" in types or "application/*" in types,
        wildcard or "text/event-stream" in types or "text/*" in types,
    )


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class FakeMCPServer(AsyncLifecycle):
    """A Streamable HTTP MCP server that validates bearers against the fake AS and fails on cue.

    Tools: ``echo {text}``, ``add {a, b}``, ``whoami`` (the fingerprint of the bearer it saw),
    ``stream {count, pace}`` (``count`` ``notifications/progress`` paced on the fake's clock,
    then a result; when the client sent no ``_meta.progressToken`` the tool still streams,
    under the token ``"stream-<request id>"``), and the conformance suite's
    ``test_simple_text``, ``test_error_handling`` and ``test_tool_with_progress``.

    A request may pick its response mode with ``params._meta["freshtoken/responseMode"]``
    (``"json"`` or ``"sse"``); a ``response-mode`` fault overrides that, and stream faults
    (``cut-stream``, ``garbage-chunk``, any ``sse_event`` match) force SSE.
    """

    def __init__(
        self,
        *,
        authorization_server: FakeAuthorizationServer | OAuthCore | None = None,
        validation: Literal["in-process", "introspection"] = "in-process",
        protocol_version: str = "2025-11-25",
        response_mode: ResponseMode = "json",
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
        self._validation = validation
        self.protocol_version = protocol_version
        self.response_mode = response_mode
        self.auth_failure_style = auth_failure_style
        self.stream_auth = stream_auth
        self.faults = faults if faults is not None else FaultPlan()
        # Sharing the AS's clock and timeline keeps one story of what happened, in one time.
        self.clock: Clock = clock or (self._core.clock if self._core is not None else SystemClock())
        self.timeline: Timeline = timeline or (
            self._core.timeline if self._core is not None else Timeline(self.clock)
        )
        self._ssl = ssl_context
        self._host = host
        self._port = port
        self._max_body = max_body
        self._allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        self._required_scopes = frozenset(required_scopes)
        self._introspection_ssl = introspection_ssl_context
        self._retry_ms = sse_retry_ms
        self._validator: Validator | None = None
        self._sessions: dict[str, Session] = {}
        self._streams = itertools.count(1)
        self._errors: list[BaseException] = []
        self._site: LoopbackSite | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the loopback port and start serving."""
        if self._core is not None:
            if self._validation == "introspection" and self._as is not None:
                introspection = IntrospectionValidator(
                    self._as.introspection_endpoint,
                    self._as.client_id,
                    self._as.client_secret,
                    ssl_context=self._introspection_ssl,
                )
                await introspection.start()
                self._validator = introspection
            else:
                self._validator = InProcessValidator(self._core)
        app = web.Application(
            middlewares=[self._guard],
            client_max_size=self._max_body + 1,
            # Lets a streaming handler see the client go away (2026-07-28: that cancels the request).
            handler_args={"handler_cancellation": True},
        )
        app.router.add_route("*", "/mcp", self._mcp)
        app.router.add_get("/.well-known/oauth-protected-resource", self._resource_metadata)
        app.router.add_get("/.well-known/oauth-protected-resource/mcp", self._resource_metadata)
        app.router.add_route("*", "/_freshtoken/{action}", self._control)
        self._site = LoopbackSite(app, host=self._host, port=self._port, ssl_context=self._ssl)
        await self._site.start()

    async def stop(self) -> None:
        """Abort open streams, stop serving and close the introspection client."""
        for session in list(self._sessions.values()):
            session.close()
        self._sessions.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        site, self._site = self._site, None
        if site is not None:
            await site.stop()
        validator, self._validator = self._validator, None
        if isinstance(validator, IntrospectionValidator):
            await validator.close()

    # -- public surface ------------------------------------------------------------------

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

    def drop_sessions(self) -> None:
        """Forget every session, as a restarted server would; their open streams end."""
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            session.close()
            self.timeline.record(_ACTOR, "session.dropped", session=session.id)

    def check(self) -> None:
        """Raise :class:`ServerSideError` if a handler crashed since the server started."""
        if self._errors:
            first = self._errors[0]
            raise ServerSideError(
                f"fake MCP server handler crashed ({len(self._errors)} error(s)): {first!r}"
            ) from first

    # -- middleware: security and crash containment ---------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        host = request.headers.get("Host", "")
        if not is_loopback_host(_host_name(host)):
            return self._refuse(request, f"non-loopback Host {host!r}")
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin):
            return self._refuse(request, f"foreign Origin {origin!r}")
        try:
            response: web.StreamResponse = await handler(request)
        except _Answered as answered:
            return answered.response
        except (web.HTTPException, ConnectionError):
            # A client that went away is not a server crash.
            raise
        except Exception as exc:
            self._errors.append(exc)
            self.timeline.record(_ACTOR, "server.error", error=repr(exc))
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
            _ACTOR, "response", status=403, mode="json", http_method=request.method, reason=reason
        )
        return web.json_response(
            error_message(None, RpcError(INVALID_REQUEST, f"Forbidden: {reason}")), status=403
        )

    # -- responses -----------------------------------------------------------------------

    def _json(
        self,
        ex: _Exchange,
        status: int,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        self.timeline.record(
            _ACTOR, "response", request_id=ex.request_id, status=status, mode="json"
        )
        return web.json_response(body, status=status, headers=headers)

    def _rpc_error(
        self, ex: _Exchange, status: int, code: int, message: str, data: Any = None
    ) -> _Answered:
        return _Answered(
            self._json(ex, status, error_message(ex.rpc_id, RpcError(code, message, data)))
        )

    def _empty(self, ex: _Exchange, status: int, mode: str) -> web.Response:
        self.timeline.record(_ACTOR, "response", request_id=ex.request_id, status=status, mode=mode)
        return web.Response(status=status)

    # -- the MCP endpoint ----------------------------------------------------------------

    @property
    def _modern(self) -> bool:
        return self.protocol_version in MODERN_VERSIONS

    async def _mcp(self, request: web.Request) -> web.StreamResponse:
        ex = _Exchange(request=request, http_method=request.method, token=_bearer(request))
        if request.method == "POST":
            return await self._post(ex)
        if request.method in ("GET", "DELETE") and not self._modern:
            return await (self._get(ex) if request.method == "GET" else self._delete(ex))
        allow = "POST" if self._modern else "GET, POST, DELETE"
        self.timeline.record(
            _ACTOR, "response", status=405, mode="json", http_method=request.method
        )
        return web.Response(status=405, headers={"Allow": allow})

    async def _read_json(self, ex: _Exchange) -> Any:
        request = ex.request
        if request.content_length is not None and request.content_length > self._max_body:
            raise self._rpc_error(ex, 413, INVALID_REQUEST, f"body exceeds {self._max_body} bytes")
        body = await request.content.read(self._max_body + 1)
        if len(body) > self._max_body:
            raise self._rpc_error(ex, 413, INVALID_REQUEST, f"body exceeds {self._max_body} bytes")
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise self._rpc_error(ex, 400, PARSE_ERROR, "Parse error") from None

    async def _post(self, ex: _Exchange) -> web.StreamResponse:
        wants_json, wants_sse = _accepts(ex.request)
        if not wants_json or (not wants_sse and not self._modern):
            raise self._rpc_error(
                ex,
                406,
                INVALID_REQUEST,
                "Not Acceptable: accept application/json and text/event-stream",
            )
        message = await self._read_json(ex)
        if not isinstance(message, dict):
            raise self._rpc_error(
                ex, 400, INVALID_REQUEST, "body must be one JSON-RPC message object"
            )
        ex.rpc_id = message.get("id")
        method = message.get("method")
        is_request = isinstance(method, str) and "id" in message
        is_notification = isinstance(method, str) and "id" not in message
        is_response = (
            method is None and "id" in message and ("result" in message or "error" in message)
        )
        if not (is_request or is_notification or is_response) or message.get("jsonrpc") != "2.0":
            raise self._rpc_error(ex, 400, INVALID_REQUEST, "Invalid Request")
        params = message.get("params", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise self._rpc_error(ex, 400, INVALID_REQUEST, "params must be an object")
        ex.rpc_method = method if isinstance(method, str) else None
        if ex.rpc_method == "tools/call" and isinstance(params.get("name"), str):
            ex.tool = params["name"]
        raw_meta = params.get("_meta")
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        if meta.get(RESPONSE_MODE_META_KEY) in RESPONSE_MODES:
            ex.mode = meta[RESPONSE_MODE_META_KEY]
        else:
            ex.mode = self.response_mode

        await self._begin(ex)

        if self._modern:
            self._check_modern(ex, message, params, is_request)
        elif ex.rpc_method != "initialize":
            self._check_session(ex)
        if not is_request:
            return self._empty(ex, 202, "accepted")
        if ex.armed:
            ex.mode = "sse"
        if not wants_sse:
            ex.mode = "json"
        assert isinstance(method, str)
        return await self._answer(ex, method, params, meta)

    async def _begin(self, ex: _Exchange) -> None:
        """Record the request, fire its faults, and check its bearer."""
        session_id = ex.request.headers.get("Mcp-Session-Id")
        self.timeline.record(
            _ACTOR,
            "request",
            request_id=ex.request_id,
            token=ex.token,
            http_method=ex.http_method,
            rpc_method=ex.rpc_method,
            tool=ex.tool,
            session=session_id,
        )
        facts = RequestFacts(ex.http_method, ex.rpc_method, ex.tool, self.clock.time())
        firing, ex.armed = self.faults.on_request(facts)
        for fault in firing:
            await self._fire(ex, fault)
        await self._authorize(ex)

    async def _fire(self, ex: _Exchange, fault: Fault) -> None:
        action = fault.action
        self.timeline.record(
            _ACTOR,
            "fault",
            request_id=ex.request_id,
            token=ex.token,
            action=action.kind,
            **action.params,
        )
        kind = action.kind
        if kind == "response-mode":
            ex.mode = action.get("mode")
        elif kind in TERMINAL_ACTION_KINDS:
            raise _Answered(await self._terminal(ex, kind, action.params))
        else:
            await self._side_effect(kind, action.params, ex.token)

    async def _side_effect(self, kind: str, params: Mapping[str, Any], token: str | None) -> None:
        if kind == "delay":
            await self.clock.sleep(float(params["seconds"]))
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

    async def _terminal(
        self, ex: _Exchange, kind: str, params: Mapping[str, Any]
    ) -> web.StreamResponse:
        if kind == "status-401":
            return await self._reject(ex, "401", "invalid_token (fault)")
        if kind == "auth-failed-200":
            return await self._reject(ex, f"200-{params['shape']}", "invalid_token (fault)")
        if kind == "status-403-scope":
            return await self._reject(
                ex, "403-scope", "insufficient_scope (fault)", scope=params["scope"]
            )
        if kind == "status-400":
            return await self._reject(ex, "400", "invalid_token (fault)")
        status = int(params["status"])
        return self._json(
            ex,
            status,
            error_message(ex.rpc_id, RpcError(INTERNAL_ERROR, f"upstream failure {status}")),
        )

    async def _authorize(self, ex: _Exchange) -> None:
        if self._validator is None:
            return
        if ex.token is None:
            verdict = BearerCheck(False, "missing bearer token")
        else:
            verdict = await self._validator.check(ex.token)
        if not verdict.valid:
            raise _Answered(
                await self._reject(
                    ex, self.auth_failure_style, verdict.reason, missing=ex.token is None
                )
            )
        if self._required_scopes and not self._required_scopes <= verdict.scopes:
            raise _Answered(await self._reject(ex, "403-scope", "insufficient_scope"))

    async def _reject(
        self,
        ex: _Exchange,
        style: str,
        reason: str,
        *,
        missing: bool = False,
        scope: str | None = None,
    ) -> web.StreamResponse:
        status = {"401": 401, "403-scope": 403, "400": 400, "500": 500}.get(style, 200)
        self.timeline.record(
            _ACTOR,
            "auth.rejected",
            request_id=ex.request_id,
            token=ex.token,
            status=status,
            style=style,
            reason=reason,
        )
        metadata = f'resource_metadata="{self.resource_metadata_url}"'
        if style == "401":
            challenge = (
                f"Bearer {metadata}"
                if missing
                else f'Bearer error="invalid_token", error_description="{reason}", {metadata}'
            )
            body = {"error": "invalid_token", "error_description": reason}
            return self._json(ex, 401, body, headers={"WWW-Authenticate": challenge})
        if style == "403-scope":
            wanted = scope or " ".join(sorted(self._required_scopes)) or _DEFAULT_SCOPE
            challenge = f'Bearer error="insufficient_scope", scope="{wanted}", {metadata}'
            body = {"error": "insufficient_scope", "error_description": reason, "scope": wanted}
            return self._json(ex, 403, body, headers={"WWW-Authenticate": challenge})
        if style == "400":
            return self._json(
                ex,
                400,
                error_message(ex.rpc_id, RpcError(INVALID_REQUEST, f"Bad Request: {reason}")),
            )
        if style == "500":
            return self._json(
                ex,
                500,
                error_message(ex.rpc_id, RpcError(INTERNAL_ERROR, f"Internal error: {reason}")),
            )
        message = auth_failure_message(style.removeprefix("200-"), ex.rpc_id, ex.rpc_method, reason)
        if ex.mode == "sse" and _accepts(ex.request)[1] and ex.http_method == "POST":
            stream = Stream(f"x{next(self._streams)}", rpc_method=ex.rpc_method, tool=ex.tool)
            stream.append(message)
            stream.finish()
            return await self._write_stream(ex, stream, start=0, priming=self._priming)
        return self._json(ex, 200, message)

    def _check_session(self, ex: _Exchange) -> None:
        session_id = ex.request.headers.get("Mcp-Session-Id")
        if session_id is None:
            raise self._rpc_error(
                ex, 400, INVALID_REQUEST, "Bad Request: Mcp-Session-Id header is required"
            )
        session = self._sessions.get(session_id)
        if session is None:
            raise self._rpc_error(ex, 404, -32001, "Session not found")
        version = ex.request.headers.get("MCP-Protocol-Version")
        if version is not None and version not in HANDSHAKE_VERSIONS:
            raise self._rpc_error(
                ex,
                400,
                INVALID_REQUEST,
                f"Bad Request: unsupported MCP-Protocol-Version {version!r}",
            )
        ex.session = session

    def _check_modern(
        self, ex: _Exchange, message: Mapping[str, Any], params: Mapping[str, Any], is_request: bool
    ) -> None:
        headers = ex.request.headers
        if not is_request:
            return
        meta = params.get("_meta")
        if (
            not isinstance(meta, dict)
            or not {
                PROTOCOL_VERSION_META_KEY,
                CLIENT_CAPABILITIES_META_KEY,
            }
            <= meta.keys()
        ):
            raise self._rpc_error(
                ex,
                400,
                INVALID_PARAMS,
                f"params._meta must carry {PROTOCOL_VERSION_META_KEY!r} and {CLIENT_CAPABILITIES_META_KEY!r}",
            )
        version = meta[PROTOCOL_VERSION_META_KEY]
        if headers.get("MCP-Protocol-Version") != version:
            raise self._rpc_error(
                ex, 400, HEADER_MISMATCH, "MCP-Protocol-Version header does not match _meta"
            )
        method = message["method"]
        if headers.get("Mcp-Method") != method:
            raise self._rpc_error(
                ex, 400, HEADER_MISMATCH, "Mcp-Method header does not match the body"
            )
        name_key = _NAME_PARAMS.get(method)
        if (
            name_key is not None
            and params.get(name_key) is not None
            and headers.get("Mcp-Name") != params[name_key]
        ):
            raise self._rpc_error(
                ex, 400, HEADER_MISMATCH, "Mcp-Name header does not match the body"
            )
        if version not in MODERN_VERSIONS:
            raise self._rpc_error(
                ex,
                400,
                UNSUPPORTED_PROTOCOL_VERSION,
                f"unsupported protocol version {version!r}",
                {"supported": list(MODERN_VERSIONS), "requested": version},
            )

    @property
    def _priming(self) -> bool:
        return self.protocol_version >= "2025-11-25" and not self._modern

    def _tool_context(
        self, ex: _Exchange, meta: Mapping[str, Any], stream: Stream | None
    ) -> ToolContext:
        async def notify(method: str, params: dict[str, Any]) -> None:
            if stream is not None:
                stream.append({"jsonrpc": "2.0", "method": method, "params": params})

        progress = meta.get("progressToken")
        return ToolContext(
            clock=self.clock,
            notify=notify,
            token_fingerprint=fingerprint(ex.token),
            progress_token=progress if isinstance(progress, str | int) else None,
            request_id=ex.rpc_id,
        )

    async def _run(
        self, ex: _Exchange, method: str, params: Mapping[str, Any], ctx: ToolContext
    ) -> tuple[int, Any]:
        try:
            result = await dispatch(method, params, ctx, protocol_version=self.protocol_version)
        except RpcError as error:
            status = _MODERN_STATUS.get(error.code, 200) if self._modern else 200
            return status, error_message(ex.rpc_id, error)
        return 200, result_message(ex.rpc_id, result)

    async def _answer(
        self, ex: _Exchange, method: str, params: Mapping[str, Any], meta: Mapping[str, Any]
    ) -> web.StreamResponse:
        headers: dict[str, str] = {}
        if method == "initialize" and not self._modern:
            status, reply = await self._run(ex, method, params, self._tool_context(ex, meta, None))
            if "result" in reply:
                session = Session(secrets.token_hex(16), reply["result"]["protocolVersion"])
                self._sessions[session.id] = session
                ex.session = session
                headers["Mcp-Session-Id"] = session.id
                self.timeline.record(
                    _ACTOR, "session.created", request_id=ex.request_id, session=session.id
                )
            if ex.mode == "json":
                return self._json(ex, status, reply, headers=headers)
            stream = self._open_stream(ex)
            stream.append(reply)
            stream.finish()
            return await self._write_stream(
                ex, stream, start=0, priming=self._priming, headers=headers
            )
        if ex.mode == "json":
            status, reply = await self._run(ex, method, params, self._tool_context(ex, meta, None))
            return self._json(ex, status, reply)
        stream = self._open_stream(ex)
        ctx = self._tool_context(ex, meta, stream)

        async def produce() -> None:
            try:
                _, reply = await self._run(ex, method, params, ctx)
                stream.append(reply)
            finally:
                stream.finish()

        stream.producer = self._spawn(produce())
        return await self._write_stream(ex, stream, start=0, priming=self._priming)

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
            self._errors.append(exc)
            self.timeline.record(_ACTOR, "server.error", error=repr(exc))

    def _open_stream(self, ex: _Exchange) -> Stream:
        stream = Stream(str(next(self._streams)), rpc_method=ex.rpc_method, tool=ex.tool)
        if ex.session is not None:
            ex.session.streams[stream.id] = stream
        return stream

    async def _write_stream(
        self,
        ex: _Exchange,
        stream: Stream,
        *,
        start: int,
        priming: bool,
        headers: Mapping[str, str] | None = None,
    ) -> web.StreamResponse:
        """Write ``stream`` from message index ``start`` as SSE, applying stream faults and stream auth."""
        response = web.StreamResponse(status=200, headers={**_SSE_HEADERS, **(headers or {})})
        position = start
        written = 0
        try:
            await response.prepare(ex.request)
            self.timeline.record(
                _ACTOR, "response", request_id=ex.request_id, status=200, mode="sse"
            )
            if priming:
                await response.write(
                    f"id: {stream.event_id(position)}\nretry: {self._retry_ms}\ndata: \n\n".encode()
                )
            while True:
                for fault in self.faults.fire_on_stream(ex.armed, written):
                    if await self._fire_on_stream(ex, stream, response, fault):
                        return response
                if not await stream.wait_beyond(position):
                    break
                if self.stream_auth != "start" and not await self._still_authorized(ex):
                    if self.stream_auth == "cut":
                        await self._cut(ex, stream, response, "close")
                        return response
                    error = auth_failure_message(
                        "jsonrpc", ex.rpc_id, ex.rpc_method, "token no longer valid"
                    )
                    await response.write(format_event(None, error))
                    self._end_stream(ex, stream)
                    break
                position += 1
                written += 1
                event_id = stream.event_id(position)
                await response.write(format_event(event_id, stream.messages[position - 1]))
                self.timeline.record(
                    _ACTOR,
                    "sse.event",
                    request_id=ex.request_id,
                    stream=stream.id,
                    event_id=event_id,
                    n=position,
                )
            await response.write_eof()
        except ConnectionError:
            self._client_gone(ex, stream)
        except asyncio.CancelledError:
            self._client_gone(ex, stream)
            raise
        return response

    def _client_gone(self, ex: _Exchange, stream: Stream) -> None:
        self.timeline.record(_ACTOR, "stream.cancelled", request_id=ex.request_id, stream=stream.id)
        self._end_stream(ex, stream)

    async def _still_authorized(self, ex: _Exchange) -> bool:
        if self._validator is None or ex.token is None:
            return True
        verdict = await self._validator.check(ex.token)
        if not verdict.valid:
            self.timeline.record(
                _ACTOR,
                "auth.rejected",
                request_id=ex.request_id,
                token=ex.token,
                status=200,
                style=f"stream-{self.stream_auth}",
                reason=verdict.reason,
            )
        return verdict.valid

    def _end_stream(self, ex: _Exchange, stream: Stream) -> None:
        """The response carrying ``stream`` is gone: stateless requests die with it."""
        if self._modern or ex.session is None:
            stream.abort()

    async def _fire_on_stream(
        self, ex: _Exchange, stream: Stream, response: web.StreamResponse, fault: Fault
    ) -> bool:
        """Apply one due stream fault; True when it ended the response."""
        action = fault.action
        self.timeline.record(
            _ACTOR,
            "fault",
            request_id=ex.request_id,
            token=ex.token,
            action=action.kind,
            stream=stream.id,
            **action.params,
        )
        if action.kind == "garbage-chunk":
            await response.write(_GARBAGE)
            return False
        if action.kind == "cut-stream":
            await self._cut(ex, stream, response, action.get("mode"))
            return True
        if action.kind in TERMINAL_ACTION_KINDS:
            shape = action.get("shape") if action.kind == "auth-failed-200" else "jsonrpc"
            error = auth_failure_message(shape, ex.rpc_id, ex.rpc_method, "invalid_token (fault)")
            await response.write(format_event(None, error))
            await response.write_eof()
            self._end_stream(ex, stream)
            return True
        if action.kind != "response-mode":
            await self._side_effect(action.kind, action.params, ex.token)
        return False

    async def _cut(
        self, ex: _Exchange, stream: Stream, response: web.StreamResponse, mode: str
    ) -> None:
        self.timeline.record(
            _ACTOR, "sse.cut", request_id=ex.request_id, stream=stream.id, mode=mode
        )
        self._end_stream(ex, stream)
        if mode == "close":
            await response.write_eof()
            return
        reset_connection(ex.request)

    async def _get(self, ex: _Exchange) -> web.StreamResponse:
        if not _accepts(ex.request)[1]:
            raise self._rpc_error(
                ex, 406, INVALID_REQUEST, "Not Acceptable: accept text/event-stream"
            )
        last_event_id = ex.request.headers.get("Last-Event-ID")
        parsed = parse_event_id(last_event_id) if last_event_id is not None else None
        known = self._sessions.get(ex.request.headers.get("Mcp-Session-Id", ""))
        resumed = known.streams.get(parsed[0]) if known is not None and parsed is not None else None
        if resumed is not None:
            # Stream faults match a resumption by the request that opened the stream.
            ex.rpc_method, ex.tool = resumed.rpc_method, resumed.tool
        await self._begin(ex)
        self._check_session(ex)
        assert ex.session is not None
        if last_event_id is None:
            standalone = self._open_stream(ex)
            return await self._write_stream(ex, standalone, start=0, priming=self._priming)
        stream = ex.session.streams.get(parsed[0]) if parsed is not None else None
        if parsed is None or stream is None or parsed[1] > len(stream.messages):
            raise self._rpc_error(
                ex, 400, INVALID_REQUEST, f"unknown Last-Event-ID {last_event_id!r}"
            )
        return await self._write_stream(ex, stream, start=parsed[1], priming=False)

    async def _delete(self, ex: _Exchange) -> web.StreamResponse:
        await self._begin(ex)
        self._check_session(ex)
        assert ex.session is not None
        session = self._sessions.pop(ex.session.id)
        session.close()
        self.timeline.record(_ACTOR, "session.deleted", session=session.id)
        return self._empty(ex, 200, "json")

    # -- metadata and control --------------------------------------------------------------

    async def _resource_metadata(self, request: web.Request) -> web.Response:
        issuers: list[str] = []
        issuers = [self._core.issuer] if self._core is not None else []
        return web.json_response(
            {
                "resource": self.url,
                "authorization_servers": issuers,
                "bearer_methods_supported": ["header"],
                "scopes_supported": sorted(self._required_scopes) or [_DEFAULT_SCOPE],
            }
        )

    async def _control(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        method = request.method
        if action == "faults" and method == "GET":
            return web.json_response(self.faults.to_dict())
        if action == "faults" and method == "DELETE":
            self.faults.clear()
            return web.json_response({"faults": 0})
        if action == "faults" and method == "POST":
            try:
                data = await request.json()
                entries = [data] if isinstance(data, dict) and "action" in data else data
                plan = FaultPlan.from_dict(entries)
            except (ValueError, ConfigError) as exc:
                return web.json_response(
                    {"error": "invalid_fault", "error_description": str(exc)}, status=400
                )
            for fault in plan:
                self.faults.add(fault)
            return web.json_response({"added": len(plan), "faults": len(self.faults)})
        if action == "drop-sessions" and method == "POST":
            count = len(self._sessions)
            self.drop_sessions()
            return web.json_response({"dropped": count})
        if action == "rotate" and method == "POST":
            if self._core is None:
                return web.json_response({"error": "auth is off: nothing to rotate"}, status=409)
            self._core.rotate()
            self.timeline.record(_ACTOR, "fault", action="rotate", source="control")
            return web.json_response({"rotated": True})
        if action == "stats" and method == "GET":
            return web.json_response(
                {
                    "sessions": len(self._sessions),
                    "requests": self.timeline.count(actor=_ACTOR, kind="request"),
                    "faults": [{**f.to_dict(), "fired": f.fired} for f in self.faults],
                }
            )
        return web.json_response({"error": f"no control {method} {action}"}, status=404)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
