"""The fake MCP server: Streamable HTTP over aiohttp, misbehaving on request.

Protocol revisions 2025-03-26 / 2025-06-18 / 2025-11-25 use sessions, a GET stream,
resumption and DELETE; 2026-07-28 is stateless (no handshake, ``Mcp-Method``/``Mcp-Name``
headers checked against the body, closing an SSE response cancels its request).

This module is the transport: routing by HTTP method, the JSON-RPC envelope and sessions. The
layers below it are ``_mcp_base`` (settings, guard, helpers, your own tools), ``_mcp_sse`` (the
SSE writer), ``_mcp_rejections`` (auth failures), ``_mcp_peer`` (talking back to the client) and
``_mcp_controls`` (the control endpoints); JSON-RPC methods themselves are answered by the
registry (``_mcp_registry``, filled by ``_mcp_builtins``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from freshtoken._lifecycle import AsyncLifecycle
from freshtoken._serve import LoopbackSite
from freshtoken._setup import AUTH_FAILURE_STYLES, RESPONSE_MODES
from freshtoken.fakes._fault_plan import FaultState, RequestFacts
from freshtoken.fakes._faults import TERMINAL_ACTION_KINDS, SetResponseMode
from freshtoken.fakes._mcp_api import Registration
from freshtoken.fakes._mcp_auth import InProcessValidator, IntrospectionValidator
from freshtoken.fakes._mcp_base import ACTOR, DEFAULT_SCOPE, Answered, Exchange, accepts, bearer
from freshtoken.fakes._mcp_controls import Controls
from freshtoken.fakes._mcp_methods import HANDSHAKE_ONLY, MODERN_ONLY
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
    REQUEST_CANCELLED,
    RESPONSE_MODE_META_KEY,
    UNSUPPORTED_PROTOCOL_VERSION,
    PeerState,
    RpcError,
    ToolContext,
    error_message,
    result_message,
)
from freshtoken.fakes._mcp_streams import Session, parse_event_id

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


def _not_json(constant: str) -> Any:
    # json.loads takes NaN and Infinity, which JSON does not have.
    raise ValueError(f"{constant} is not JSON")


class FakeMCPServer(Controls, Registration, AsyncLifecycle):
    """A Streamable HTTP MCP server that validates bearers against the fake AS and fails on cue.

    It speaks the whole protocol: tools, resources (templates, subscriptions), prompts,
    completion, logging, sampling, elicitation, roots, cancellation, pagination and
    ``list_changed``. Tools: ``echo {text}``, ``add {a, b}``, ``whoami`` (the fingerprint of the
    bearer it saw), ``stream {count, pace}`` (``count`` ``notifications/progress`` paced on the
    fake's clock, then a result; without a ``_meta.progressToken`` it still streams, under the
    token ``"stream-<request id>"``), ``list_roots``, and the conformance suite's ``test_*``
    tools (sampling, elicitation, logging, progress, every content type, SEP-1699 polling).
    Register your own with :meth:`tool`, :meth:`resource`, :meth:`resource_template` and
    :meth:`prompt`.

    POSTs are answered with SSE (``response_mode="sse"``, as the official SDK servers do) or
    JSON; a request may pick with ``params._meta["freshtoken/responseMode"]``, a
    ``response-mode`` fault overrides that, and stream faults (``cut-stream``,
    ``garbage-chunk``, any ``sse_event`` match) force SSE. A notification a JSON response cannot
    carry is recorded on the timeline as ``notification.dropped``.
    """

    async def start(self) -> None:
        """Bind the loopback port and start serving."""
        self._loop = asyncio.get_running_loop()
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
        self._control_routes()
        self._site = LoopbackSite(app, host=self._host, port=self._port, ssl_context=self._ssl)
        await self._site.start()

    async def stop(self) -> None:
        """End listen streams, abort open streams, stop serving, close the introspection client."""
        await self._close_listeners()
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
        too_big = f"body exceeds {self._max_body} bytes"
        if request.content_length is not None and request.content_length > self._max_body:
            raise self._rpc_error(ex, 413, INVALID_REQUEST, too_big)
        # Read to the end: one read returns only what has arrived so far.
        body = bytearray()
        while chunk := await request.content.readany():
            body += chunk
            if len(body) > self._max_body:
                raise self._rpc_error(ex, 413, INVALID_REQUEST, too_big)
        try:
            return json.loads(body, parse_constant=_not_json)
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
        name = params.get(_NAME_PARAMS.get(ex.rpc_method or "", ""))
        if isinstance(name, str):
            if ex.rpc_method == "tools/call":
                ex.tool = name
            elif ex.rpc_method == "prompts/get":
                ex.prompt = name
            else:
                ex.resource = name
        if is_response:
            ex.response_to = self._answered_method(ex.rpc_id)
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
        if is_response:
            self._deliver(ex, message)
            return self._empty(ex, 202, "accepted")
        if is_notification:
            assert isinstance(method, str)
            self._on_notification(ex, method, params)
            return self._empty(ex, 202, "accepted")
        assert isinstance(method, str)
        if self._modern and method == "subscriptions/listen":
            return await self._listen(ex, params)
        if ex.armed:
            ex.mode = "sse"
        if not wants_sse:
            ex.mode = "json"
        return await self._answer(ex, method, params, meta)

    async def _begin(self, ex: Exchange) -> None:
        """Record the request, fire its faults, and check its bearer."""
        self._requests += 1
        session_id = ex.request.headers.get("Mcp-Session-Id")
        # A client's answer to a server request says which request it answers.
        detail: dict[str, Any] = {} if ex.response_to is None else {"answers": ex.response_to}
        self.timeline.record(
            ACTOR,
            "request",
            request_id=ex.request_id,
            token=ex.token,
            http_method=ex.http_method,
            rpc_method=ex.rpc_method,
            tool=ex.tool,
            session=session_id,
            **detail,
        )
        facts = RequestFacts(
            ex.http_method,
            ex.rpc_method,
            ex.tool,
            self.clock.time(),
            prompt=ex.prompt,
            resource=ex.resource,
            response_to=ex.response_to,
        )
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

    async def _run(
        self,
        ex: Exchange,
        method: str,
        params: Mapping[str, Any],
        ctx: ToolContext,
        state: PeerState,
    ) -> tuple[int, Any]:
        try:
            result = await self._registry.dispatch(
                method, params, ctx, protocol_version=self.protocol_version, state=state
            )
        except RpcError as error:
            status = _MODERN_STATUS.get(error.code, 200) if self._modern else 200
            return status, error_message(ex.rpc_id, error)
        return 200, result_message(ex.rpc_id, result)

    async def _answer(
        self, ex: Exchange, method: str, params: Mapping[str, Any], meta: Mapping[str, Any]
    ) -> web.StreamResponse:
        if method == "initialize" and not self._modern:
            return await self._initialize(ex, params, meta)
        if method not in self._registry.methods or method in (
            HANDSHAKE_ONLY if self._modern else MODERN_ONLY
        ):
            # Known before anything runs: a plain JSON answer, with its HTTP status in 2026-07-28.
            error = RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")
            status = _MODERN_STATUS[METHOD_NOT_FOUND] if self._modern else 200
            return self._json(ex, status, error_message(ex.rpc_id, error))
        state = ex.session.state if ex.session is not None else PeerState()
        if ex.mode == "json":
            ctx = self._context(ex, params, meta, None, state)
            task = asyncio.ensure_future(self._run(ex, method, params, ctx, state))
            self._track(ex, task)
            try:
                status, reply = await asyncio.shield(task)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not task.cancelled() or (current is not None and current.cancelling()):
                    # The client went away: nobody is left to answer.
                    task.cancel()
                    raise
                error = RpcError(REQUEST_CANCELLED, "Request cancelled")
                return self._json(ex, 200, error_message(ex.rpc_id, error))
            return self._json(ex, status, reply)
        stream = self._open_stream(ex)
        ctx = self._context(ex, params, meta, stream, state)

        async def produce() -> None:
            try:
                _, reply = await self._run(ex, method, params, ctx, state)
                stream.append(reply)
            finally:
                stream.finish()

        stream.producer = self._spawn(produce())
        self._track(ex, stream.producer)
        return await self._write_stream(ex, stream, start=0, priming=self._priming)

    async def _initialize(
        self, ex: Exchange, params: Mapping[str, Any], meta: Mapping[str, Any]
    ) -> web.StreamResponse:
        headers: dict[str, str] = {}
        state = PeerState()
        ctx = self._context(ex, params, meta, None, state)
        status, reply = await self._run(ex, "initialize", params, ctx, state)
        if "result" in reply:
            session = Session(secrets.token_hex(16), reply["result"]["protocolVersion"], state)
            self._add_session(session)
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
        return await self._write_stream(ex, stream, start=0, priming=self._priming, headers=headers)

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
        session = ex.session
        assert session is not None
        if last_event_id is None:
            # One standalone stream per session: a new GET replaces the one before.
            if session.standalone is not None:
                session.standalone.finish()
            session.standalone = self._open_stream(ex)
            return await self._write_stream(ex, session.standalone, start=0, priming=self._priming)
        stream = session.streams.get(parsed[0]) if parsed is not None else None
        if parsed is None or stream is None or parsed[1] > len(stream.messages):
            raise self._rpc_error(
                ex, 400, INVALID_REQUEST, f"unknown Last-Event-ID {last_event_id!r}"
            )
        if stream.rpc_method is None and not stream.done:
            session.standalone = stream
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
        issuers = [self._core.issuer] if self._core is not None else []
        return web.json_response(
            {
                "resource": self.url,
                "authorization_servers": issuers,
                "bearer_methods_supported": ["header"],
                "scopes_supported": sorted(self._required_scopes) or [DEFAULT_SCOPE],
            }
        )
