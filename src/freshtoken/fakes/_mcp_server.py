"""The fake MCP server: Streamable HTTP over aiohttp, misbehaving on request.

Protocol revisions 2025-03-26 / 2025-06-18 / 2025-11-25 use sessions, a GET stream,
resumption and DELETE; 2026-07-28 is stateless (no handshake, ``Mcp-Method``/``Mcp-Name``
headers checked against the body, closing an SSE response cancels its request).

This module is the transport: routing by HTTP method, the JSON-RPC envelope, sessions and the
control endpoints. The layers below it are ``_mcp_base`` (settings, guard, helpers),
``_mcp_sse`` (the SSE writer) and ``_mcp_rejections`` (auth failures); JSON-RPC methods
themselves are answered by ``_mcp_protocol``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from freshtoken._errors import ConfigError
from freshtoken._lifecycle import AsyncLifecycle
from freshtoken._serve import LoopbackSite
from freshtoken._setup import AUTH_FAILURE_STYLES, RESPONSE_MODES
from freshtoken._timeline import fingerprint
from freshtoken.fakes._fault_plan import FaultPlan, FaultState, RequestFacts
from freshtoken.fakes._faults import TERMINAL_ACTION_KINDS, Fault, SetResponseMode
from freshtoken.fakes._mcp_auth import InProcessValidator, IntrospectionValidator
from freshtoken.fakes._mcp_base import ACTOR, DEFAULT_SCOPE, Answered, Exchange, accepts, bearer
from freshtoken.fakes._mcp_protocol import (
    CLIENT_CAPABILITIES_META_KEY,
    HANDSHAKE_VERSIONS,
    HEADER_MISMATCH,
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
    error_message,
    result_message,
)
from freshtoken.fakes._mcp_rejections import Rejections
from freshtoken.fakes._mcp_streams import Session, Stream, parse_event_id

__all__ = ["AUTH_FAILURE_STYLES", "FakeMCPServer"]

# Where a modern (2026-07-28) transport maps JSON-RPC error codes to HTTP statuses.
_MODERN_STATUS: Final = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}
_NAME_PARAMS: Final = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


class FakeMCPServer(Rejections, AsyncLifecycle):
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
        self._controls = {
            ("GET", "faults"): self._list_faults,
            ("POST", "faults"): self._add_faults,
            ("DELETE", "faults"): self._clear_faults,
            ("POST", "drop-sessions"): self._drop_sessions,
            ("POST", "rotate"): self._rotate,
            ("GET", "stats"): self._stats,
        }
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

    async def _mcp(self, request: web.Request) -> web.StreamResponse:
        ex = Exchange(request=request, http_method=request.method, token=bearer(request))
        if request.method == "POST":
            return await self._post(ex)
        if request.method in ("GET", "DELETE") and not self._modern:
            return await (self._get(ex) if request.method == "GET" else self._delete(ex))
        allow = "POST" if self._modern else "GET, POST, DELETE"
        self.timeline.record(ACTOR, "response", status=405, mode="json", http_method=request.method)
        return web.Response(status=405, headers={"Allow": allow})

    async def _read_json(self, ex: Exchange) -> Any:
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

    async def _post(self, ex: Exchange) -> web.StreamResponse:
        wants_json, wants_sse = accepts(ex.request)
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

    async def _begin(self, ex: Exchange) -> None:
        """Record the request, fire its faults, and check its bearer."""
        self._requests += 1
        session_id = ex.request.headers.get("Mcp-Session-Id")
        self.timeline.record(
            ACTOR,
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

    async def _fire(self, ex: Exchange, fault: FaultState) -> None:
        action = fault.fault.action
        self.timeline.record(
            ACTOR,
            "fault",
            request_id=ex.request_id,
            token=ex.token,
            action=action.kind,
            **action.params,
        )
        if isinstance(action, SetResponseMode):
            ex.mode = action.mode
        elif action.kind in TERMINAL_ACTION_KINDS:
            raise Answered(await self._terminal(ex, action))
        else:
            await self._side_effect(action, ex.token)

    def _check_session(self, ex: Exchange) -> None:
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
        self, ex: Exchange, message: Mapping[str, Any], params: Mapping[str, Any], is_request: bool
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

    def _tool_context(
        self, ex: Exchange, meta: Mapping[str, Any], stream: Stream | None
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
        self, ex: Exchange, method: str, params: Mapping[str, Any], ctx: ToolContext
    ) -> tuple[int, Any]:
        try:
            result = await self._registry.dispatch(
                method, params, ctx, protocol_version=self.protocol_version
            )
        except RpcError as error:
            status = _MODERN_STATUS.get(error.code, 200) if self._modern else 200
            return status, error_message(ex.rpc_id, error)
        return 200, result_message(ex.rpc_id, result)

    async def _answer(
        self, ex: Exchange, method: str, params: Mapping[str, Any], meta: Mapping[str, Any]
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
                    ACTOR, "session.created", request_id=ex.request_id, session=session.id
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

    async def _get(self, ex: Exchange) -> web.StreamResponse:
        if not accepts(ex.request)[1]:
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

    async def _delete(self, ex: Exchange) -> web.StreamResponse:
        await self._begin(ex)
        self._check_session(ex)
        assert ex.session is not None
        session = self._sessions.pop(ex.session.id)
        session.close()
        self.timeline.record(ACTOR, "session.deleted", session=session.id)
        return self._empty(ex, 200, "json")

    async def _resource_metadata(self, request: web.Request) -> web.Response:
        issuers: list[str] = []
        issuers = [self._core.issuer] if self._core is not None else []
        return web.json_response(
            {
                "resource": self.url,
                "authorization_servers": issuers,
                "bearer_methods_supported": ["header"],
                "scopes_supported": sorted(self._required_scopes) or [DEFAULT_SCOPE],
            }
        )

    async def _control(self, request: web.Request) -> web.Response:
        name = request.match_info["action"]
        handler = self._controls.get((request.method, name))
        if handler is None:
            return web.json_response({"error": f"no control {request.method} {name}"}, status=404)
        return await handler(request)

    async def _add_faults(self, request: web.Request) -> web.Response:
        source = f"{request.method} {request.path}"
        try:
            try:
                data = json.loads(await request.read())
            except ValueError:
                raise ConfigError.at(source, "(body)", "not valid JSON") from None
            # One fault object, a list of them, or a whole plan.
            if isinstance(data, dict) and "action" in data:
                faults = [Fault.from_dict(data, source=source)]
            else:
                faults = list(FaultPlan.from_dict(data, source=source))
        except ConfigError as exc:
            return web.json_response(
                {"error": "invalid_fault", "error_description": str(exc)}, status=400
            )
        self.faults.extend(faults)
        return web.json_response({"added": len(faults), "faults": len(self.faults)})

    async def _list_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.to_dict())

    async def _clear_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response({"faults": 0})

    async def _drop_sessions(self, request: web.Request) -> web.Response:
        count = len(self._sessions)
        self.drop_sessions()
        return web.json_response({"dropped": count})

    async def _rotate(self, request: web.Request) -> web.Response:
        if self._core is None:
            return web.json_response({"error": "auth is off: nothing to rotate"}, status=409)
        self._core.rotate()
        self.timeline.record(ACTOR, "fault", action="rotate", source="control")
        return web.json_response({"rotated": True})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "sessions": len(self._sessions),
                "requests": self._requests,
                "faults": [state.to_dict() for state in self.faults.states],
            }
        )
