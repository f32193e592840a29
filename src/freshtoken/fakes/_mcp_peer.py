"""How the fake MCP server talks back to its clients while it answers: notifications on the
request's stream (recorded as dropped when the response is JSON), requests to the client
(sampling, elicitation, roots) and the client's answers to them, cancellation, and the
``list_changed`` / ``resources/updated`` notifications a test triggers.

Through 2025-11-25 a server request travels on the SSE response of the request it serves, or on
the session's GET stream when that response is JSON; the client answers with a POST. In
2026-07-28 there are no server requests: a handler's question becomes an ``input_required``
result and the client retries with the answers (:class:`~freshtoken.fakes._mcp_protocol.InputRounds`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, Final, Literal

from aiohttp import web

from freshtoken._timeline import fingerprint
from freshtoken.fakes._mcp_base import ACTOR, Exchange, Listener, Pending
from freshtoken.fakes._mcp_protocol import (
    CLIENT_CAPABILITIES_META_KEY,
    INTERNAL_ERROR,
    LOG_LEVEL_META_KEY,
    LOG_LEVELS,
    InputRounds,
    PeerState,
    RpcError,
    ToolContext,
)
from freshtoken.fakes._mcp_rejections import Rejections
from freshtoken.fakes._mcp_streams import Stream

__all__ = ["Peer", "request_key"]

ListKind = Literal["tools", "resources", "prompts"]
_LIST_FILTERS: Final = {
    "tools": "toolsListChanged",
    "resources": "resourcesListChanged",
    "prompts": "promptsListChanged",
}
_SUBSCRIPTION_ID_META_KEY: Final = "io.modelcontextprotocol/subscriptionId"


def request_key(session: str | None, rpc_id: Any) -> tuple[str | None, str]:
    """How a running request is found again: its session and its JSON-RPC id (``1`` and
    ``"1"`` are different ids)."""
    return session, json.dumps(rpc_id)


class Peer(Rejections):
    """Notifications, server requests, cancellation and broadcasts (see the module docstring)."""

    def _context(
        self,
        ex: Exchange,
        params: Mapping[str, Any],
        meta: Mapping[str, Any],
        stream: Stream | None,
        state: PeerState,
    ) -> ToolContext:
        async def notify(method: str, message_params: dict[str, Any]) -> None:
            message = {"jsonrpc": "2.0", "method": method, "params": message_params}
            if stream is not None:
                stream.append(message)
            else:
                # A JSON response carries exactly one message: say what it could not carry.
                self.timeline.record(
                    ACTOR, "notification.dropped", request_id=ex.request_id, method=method
                )

        async def ask(method: str, message_params: dict[str, Any]) -> dict[str, Any]:
            return await self._ask(ex, stream, method, message_params)

        progress = meta.get("progressToken")
        if self._modern:
            capabilities = meta.get(CLIENT_CAPABILITIES_META_KEY)
            level = meta.get(LOG_LEVEL_META_KEY)
            ctx = ToolContext(
                clock=self.clock,
                notify=notify,
                client_capabilities=capabilities if isinstance(capabilities, dict) else {},
                log_level=level if level in LOG_LEVELS else None,
                ask=InputRounds(params).ask,
            )
        else:
            ctx = ToolContext(
                clock=self.clock,
                notify=notify,
                client_capabilities=state.client_capabilities,
                log_level=state.log_level,
                ask=ask,
                close_stream=stream.close_responses if stream is not None else None,
            )
        ctx.token_fingerprint = fingerprint(ex.token)
        ctx.progress_token = progress if isinstance(progress, str | int) else None
        ctx.request_id = ex.rpc_id
        ctx.protocol_version = self.protocol_version
        return ctx

    # -- server requests and the client's answers -----------------------------------------------

    async def _ask(
        self, ex: Exchange, stream: Stream | None, method: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        session = ex.session
        channel = stream
        if channel is None and session is not None and session.standalone is not None:
            channel = session.standalone
        if channel is None or channel.done:
            self.timeline.record(
                ACTOR, "server.request.undeliverable", request_id=ex.request_id, method=method
            )
            raise RpcError(
                INTERNAL_ERROR,
                f"cannot send {method}: the response is JSON and the client has no GET stream open",
            )
        ident = f"freshtoken-{next(self._asks)}"
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = Pending(method, session.id if session else None, answer)
        channel.append({"jsonrpc": "2.0", "id": ident, "method": method, "params": params})
        self.timeline.record(
            ACTOR, "server.request", request_id=ex.request_id, method=method, server_request=ident
        )
        try:
            async with asyncio.timeout(self._client_timeout):
                message = await answer
        except TimeoutError:
            self.timeline.record(
                ACTOR, "server.request.timeout", request_id=ex.request_id, server_request=ident
            )
            raise RpcError(
                INTERNAL_ERROR,
                f"the client did not answer {method} within {self._client_timeout:g} s",
            ) from None
        finally:
            self._pending.pop(ident, None)
        error = message.get("error")
        if isinstance(error, dict):
            raise RpcError(
                int(error.get("code", INTERNAL_ERROR))
                if isinstance(error.get("code"), int)
                else INTERNAL_ERROR,
                f"the client answered {method} with an error: {error.get('message', '')}",
            )
        result = message.get("result")
        if not isinstance(result, dict):
            raise RpcError(INTERNAL_ERROR, f"the client's answer to {method} has no result object")
        return result

    def _answered_method(self, rpc_id: Any) -> str | None:
        """The method of the server request a client's response answers (None if unknown)."""
        pending = self._pending.get(rpc_id) if isinstance(rpc_id, str) else None
        return pending.method if pending is not None else None

    def _deliver(self, ex: Exchange, message: Mapping[str, Any]) -> None:
        pending = self._pending.get(ex.rpc_id) if isinstance(ex.rpc_id, str) else None
        session = ex.session.id if ex.session is not None else None
        if pending is None or pending.session != session or pending.answer.done():
            self.timeline.record(ACTOR, "client.response.unexpected", request_id=ex.request_id)
            return
        pending.answer.set_result(dict(message))
        self.timeline.record(
            ACTOR, "client.response", request_id=ex.request_id, method=pending.method
        )

    # -- notifications from the client, cancellation ----------------------------------------------

    def _on_notification(self, ex: Exchange, method: str, params: Mapping[str, Any]) -> None:
        if method == "notifications/cancelled":
            session = ex.session.id if ex.session is not None else None
            target = params.get("requestId")
            task = self._running.get(request_key(session, target))
            reason = params.get("reason")
            why = reason if isinstance(reason, str) else None
            if task is None or task.done():
                self.timeline.record(ACTOR, "cancel.unknown", request_id=str(target), reason=why)
                return
            self.timeline.record(ACTOR, "request.cancelled", request_id=str(target), reason=why)
            task.cancel()
        elif method == "notifications/roots/list_changed":
            self.timeline.record(
                ACTOR, "roots.changed", session=ex.session.id if ex.session else None
            )

    def _track(self, ex: Exchange, task: asyncio.Task[Any]) -> None:
        """Let ``notifications/cancelled`` find ``task`` while it runs."""
        key = request_key(ex.session.id if ex.session is not None else None, ex.rpc_id)
        self._running[key] = task

        def forget(done: asyncio.Task[Any]) -> None:
            if self._running.get(key) is done:
                del self._running[key]

        task.add_done_callback(forget)

    # -- list_changed and resources/updated --------------------------------------------------------

    def notify_list_changed(self, kind: ListKind) -> None:
        """Tell every client that the ``tools``, ``resources`` or ``prompts`` list changed
        (``notifications/<kind>/list_changed`` on each session's GET stream, or on 2026-07-28
        ``subscriptions/listen`` streams that opted in). Safe to call from any thread."""
        if kind not in _LIST_FILTERS:
            raise ValueError(f"kind must be tools, resources or prompts, got {kind!r}")
        self._on_loop(self._broadcast, f"notifications/{kind}/list_changed", {}, None, kind)

    def notify_resource_updated(self, uri: str) -> None:
        """Tell the clients subscribed to ``uri`` that it changed
        (``notifications/resources/updated``). Safe to call from any thread."""
        self._on_loop(self._broadcast, "notifications/resources/updated", {"uri": uri}, uri, None)

    def _on_loop(self, function: Any, *args: Any) -> None:
        loop = self._loop
        if loop is None:
            raise RuntimeError("FakeMCPServer is not running")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            function(*args)
        else:
            loop.call_soon_threadsafe(function, *args)

    def _broadcast(
        self, method: str, params: dict[str, Any], uri: str | None, kind: str | None
    ) -> None:
        message = {"jsonrpc": "2.0", "method": method, "params": params}
        delivered = 0
        if self._modern:
            for listener in self._listeners.values():
                wanted = listener.notifications
                if (kind is not None and wanted.get(_LIST_FILTERS[kind]) is True) or (
                    uri is not None and uri in (wanted.get("resourceSubscriptions") or [])
                ):
                    listener.stream.append(message)
                    delivered += 1
        else:
            for session in self._sessions.values():
                if uri is not None and uri not in session.state.subscriptions:
                    continue
                if session.standalone is None or session.standalone.done:
                    self.timeline.record(
                        ACTOR, "notification.undelivered", method=method, session=session.id
                    )
                    continue
                session.standalone.append(message)
                delivered += 1
        self.timeline.record(ACTOR, "notification.sent", method=method, delivered=delivered)

    # -- 2026-07-28 subscriptions/listen -----------------------------------------------------------

    async def _listen(self, ex: Exchange, params: Mapping[str, Any]) -> web.StreamResponse:
        wanted = params.get("notifications")
        if not isinstance(wanted, Mapping):
            raise self._rpc_error(ex, 400, -32602, "'notifications' must be an object")
        honoured: dict[str, Any] = {
            key: value
            for key, value in wanted.items()
            if (key in _LIST_FILTERS.values() and value is True)
            or (
                key == "resourceSubscriptions"
                and isinstance(value, list)
                and all(isinstance(uri, str) for uri in value)
            )
        }
        stream = self._open_stream(ex)
        stream.append(
            {
                "jsonrpc": "2.0",
                "method": "notifications/subscriptions/acknowledged",
                "params": {"notifications": honoured},
            }
        )
        listener = Listener(ex.rpc_id, honoured, stream)
        self._listeners[id(listener)] = listener
        self.timeline.record(ACTOR, "listen.open", request_id=ex.request_id, **honoured)
        try:
            return await self._write_stream(ex, stream, start=0, priming=False)
        finally:
            self._listeners.pop(id(listener), None)
            listener.written.set()

    async def _close_listeners(self) -> None:
        """Shutting down: each listen stream ends gracefully, with its result (given a second
        to write it)."""
        listeners = list(self._listeners.values())
        for listener in listeners:
            listener.stream.append(
                {
                    "jsonrpc": "2.0",
                    "id": listener.request_id,
                    "result": {
                        "_meta": {_SUBSCRIPTION_ID_META_KEY: listener.request_id},
                        "resultType": "complete",
                    },
                }
            )
            listener.stream.finish()
        if listeners:
            waiters = [asyncio.ensure_future(listener.written.wait()) for listener in listeners]
            _, late = await asyncio.wait(waiters, timeout=1.0)
            for waiter in late:
                waiter.cancel()
