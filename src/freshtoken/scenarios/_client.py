"""A small Streamable HTTP MCP client (httpx) that the subjects drive.

It speaks 2025-06-18 / 2025-11-25 (initialize, sessions, JSON or SSE responses, the GET stream,
resumption with ``Last-Event-ID``, DELETE, re-initialize on a session 404) and the stateless
2026-07-28 revision (no handshake, ``Mcp-Method``/``Mcp-Name`` headers). Token handling is not
its business: an optional :class:`ClientAuth` supplies the ``Authorization`` header and decides
whether a failed exchange is retried, which is exactly where the reference subjects differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self

import httpx

from freshtoken._setup import STATELESS_VERSION
from freshtoken._timeline import Timeline

__all__ = ["CallOutcome", "ClientAuth", "Exchange", "McpClient", "SseEvent"]

_ACCEPT_BOTH = "application/json, text/event-stream"
# The stateless revision carries what the handshake used to negotiate in every request's _meta.
_PROTOCOL_VERSION_META = "io.modelcontextprotocol/protocolVersion"
_CLIENT_CAPABILITIES_META = "io.modelcontextprotocol/clientCapabilities"
_RESPONSE_MODE_META = "freshtoken/responseMode"
# What this client can be asked, and what it answers: a server request during a call is
# answered with a POST, which is where a rotated token can bite.
_CAPABILITIES: dict[str, Any] = {"sampling": {}, "elicitation": {}, "roots": {"listChanged": False}}
_ANSWERS: dict[str, dict[str, Any]] = {
    "sampling/createMessage": {
        "role": "assistant",
        "content": {"type": "text", "text": "freshtoken"},
        "model": "freshtoken-scenarios",
    },
    "elicitation/create": {"action": "decline"},
    "roots/list": {"roots": []},
    "ping": {},
}


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One server-sent event."""

    id: str | None
    event: str | None
    data: str


@dataclass
class Exchange:
    """One HTTP request/response as the client saw it, with the JSON-RPC messages it carried."""

    status: int
    content_type: str
    headers: Mapping[str, str]
    body: bytes = b""
    messages: list[dict[str, Any]] = field(default_factory=list)
    response: dict[str, Any] | None = None
    last_event_id: str | None = None
    cut: bool = False
    transport_error: str | None = None
    unanswered: str | None = None
    """Why the client gave up on this response: it could not deliver its answer to a server
    request."""

    @property
    def is_sse(self) -> bool:
        return self.content_type.startswith("text/event-stream")


@dataclass
class CallOutcome:
    """How one client call ended."""

    status: int | None
    result: dict[str, Any] | None = None
    error: str | None = None
    progress: list[float] = field(default_factory=list)
    request_id: str | None = None
    """The JSON-RPC id the call went out with (the verdicts find it among what the server saw)."""

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.result is not None and not self.result.get("isError")


class ClientAuth(Protocol):
    """Client-side token handling: the header to send, and whether to retry after an exchange."""

    async def authorization(self) -> str | None:
        """The ``Authorization`` header value for the next send (``None`` sends none)."""
        ...

    async def should_retry(self, exchange: Exchange, attempt: int, sent: str | None) -> bool:
        """After send number ``attempt`` (1-based) with header ``sent``: send again?"""
        ...


class McpClient:
    """A Streamable HTTP MCP client recording ``"client"`` events on the shared timeline."""

    def __init__(
        self,
        url: str,
        *,
        timeline: Timeline,
        protocol_version: str = "2025-11-25",
        auth: ClientAuth | None = None,
        verify: Any = True,
        timeout: float = 10.0,
        max_resumes: int = 3,
        name: str = "client",
        limits: httpx.Limits | None = None,
    ) -> None:
        self.url = url
        self.timeline = timeline
        self.protocol_version = protocol_version
        self.auth = auth
        self.session_id: str | None = None
        self.max_resumes = max_resumes
        self.name = name
        self.last_get_event_id: str | None = None
        self.get_events: list[SseEvent] = []
        self._negotiated: str | None = None
        self._ids = itertools.count(1)
        # ``limits`` with no keep-alive leaves no connection open between calls, so the client
        # is bound to no event loop: the pytest fixture's client works from any test's loop.
        pool: dict[str, Any] = {} if limits is None else {"limits": limits}
        self.http_timeout = httpx.Timeout(timeout, connect=5.0)
        self._http = httpx.AsyncClient(verify=verify, timeout=self.http_timeout, **pool)
        self._get_task: asyncio.Task[None] | None = None

    @property
    def stateless(self) -> bool:
        return self.protocol_version == STATELESS_VERSION

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @contextlib.contextmanager
    def sending_through(self, http: httpx.AsyncClient) -> Iterator[None]:
        """Send with ``http`` inside the block, then with the client's own connections again.

        The pytest fixture initializes on its own (asyncio) loop through an aiohttp-backed
        ``httpx`` client, and leaves the client's own pool unused until the test's first call,
        on the test's loop.
        """
        own, self._http = self._http, http
        try:
            yield
        finally:
            self._http = own

    async def aclose(self) -> None:
        """Stop the GET stream and close connections."""
        task, self._get_task = self._get_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._http.aclose()

    # -- lifecycle ---------------------------------------------------------------------------

    async def initialize(self) -> CallOutcome:
        """Initialize a session (no-op handshake in the stateless revision)."""
        if self.stateless:
            self.timeline.record(self.name, "initialize.skipped", reason="stateless revision")
            return CallOutcome(status=200, result={})
        self.session_id = None
        self._negotiated = None
        request_id = next(self._ids)
        params = {
            "protocolVersion": self.protocol_version,
            "capabilities": _CAPABILITIES,
            "clientInfo": {"name": "freshtoken-scenarios", "version": "1"},
        }
        exchange = await self._send_with_auth("initialize", params, request_id, name=None)
        outcome = _outcome(exchange)
        if outcome.ok and outcome.result is not None:
            self.session_id = exchange.headers.get("mcp-session-id")
            self._negotiated = str(outcome.result.get("protocolVersion", self.protocol_version))
            await self._notify("notifications/initialized")
        self.timeline.record(
            self.name,
            "initialized" if outcome.ok else "initialize.failed",
            request_id=str(request_id),
            status=outcome.status,
            session=self.session_id,
        )
        return outcome

    async def delete(self) -> int | None:
        """End the session with DELETE; return the status."""
        if self.session_id is None:
            return None
        headers = await self._headers(None)
        response = await self._http.delete(self.url, headers=headers)
        self.timeline.record(self.name, "session.delete", status=response.status_code)
        self.session_id = None
        return response.status_code

    # -- calls -------------------------------------------------------------------------------

    async def call(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        progress: bool = False,
        extra_headers: Mapping[str, str] | None = None,
    ) -> CallOutcome:
        """Call a tool; re-initialize once on a session 404, resume cut SSE streams."""
        request_id = next(self._ids)
        params: dict[str, Any] = {"name": tool, "arguments": dict(arguments)}
        if progress:
            # The response-mode hint is the fake MCP server's; other servers ignore _meta keys
            # they do not know.
            params["_meta"] = {"progressToken": f"p{request_id}", _RESPONSE_MODE_META: "sse"}
        self.timeline.record(self.name, "call.start", request_id=str(request_id), tool=tool)
        try:
            outcome = await self._call(request_id, tool, params, extra_headers)
        except asyncio.CancelledError:
            self.timeline.record(self.name, "call.abandoned", request_id=str(request_id))
            raise
        outcome.request_id = str(request_id)
        detail: dict[str, Any] = {}
        if outcome.error:
            detail["error"] = outcome.error
        if progress:
            detail["progress"] = len(outcome.progress)
        self.timeline.record(
            self.name,
            "call.result" if outcome.ok else "call.error",
            request_id=str(request_id),
            status=outcome.status,
            **detail,
        )
        return outcome

    async def _call(
        self,
        request_id: int,
        tool: str,
        params: dict[str, Any],
        extra_headers: Mapping[str, str] | None,
    ) -> CallOutcome:
        exchange = await self._send_with_auth(
            "tools/call", params, request_id, name=tool, extra_headers=extra_headers
        )
        if exchange.status == 404 and self.session_id is not None:
            # The server forgot the session: start a new one without the old id, then resend.
            self.timeline.record(self.name, "session.expired", request_id=str(request_id))
            await self.initialize()
            exchange = await self._send_with_auth(
                "tools/call", params, request_id, name=tool, extra_headers=extra_headers
            )
        progress = _progress(exchange.messages)
        resumes = 0
        while (
            exchange.cut
            and exchange.last_event_id is not None
            and not self.stateless
            and resumes < self.max_resumes
        ):
            resumes += 1
            self.timeline.record(
                self.name,
                "stream.resume",
                request_id=str(request_id),
                last_event_id=exchange.last_event_id,
            )
            exchange = await self._resume(exchange.last_event_id, request_id)
            progress.extend(_progress(exchange.messages))
        outcome = _outcome(exchange)
        outcome.progress = progress
        return outcome

    async def _send_with_auth(
        self,
        method: str,
        params: dict[str, Any],
        request_id: int,
        *,
        name: str | None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Exchange:
        async def send(authorization: str | None) -> Exchange:
            return await self._post(
                method, params, request_id, authorization, name=name, extra_headers=extra_headers
            )

        return await self._with_auth(send, request_id)

    async def _with_auth(
        self, send: Callable[[str | None], Awaitable[Exchange]], request_id: int
    ) -> Exchange:
        attempt = 0
        while True:
            attempt += 1
            authorization = await self.auth.authorization() if self.auth is not None else None
            exchange = await send(authorization)
            if self.auth is None or not await self.auth.should_retry(
                exchange, attempt, authorization
            ):
                return exchange
            self.timeline.record(
                self.name, "retry", request_id=str(request_id), attempt=attempt + 1
            )

    async def _notify(self, method: str) -> None:
        authorization = await self.auth.authorization() if self.auth is not None else None
        headers = await self._headers(authorization)
        headers["Content-Type"] = "application/json"
        body = {"jsonrpc": "2.0", "method": method}
        await self._http.post(self.url, headers=headers, content=json.dumps(body))

    async def _headers(self, authorization: str | None) -> dict[str, str]:
        headers = {"Accept": _ACCEPT_BOTH}
        if authorization is not None:
            headers["Authorization"] = authorization
        if self.session_id is not None:
            headers["Mcp-Session-Id"] = self.session_id
        version = self.protocol_version if self.stateless else self._negotiated
        if version is not None:
            headers["MCP-Protocol-Version"] = version
        return headers

    async def _post(
        self,
        method: str,
        params: dict[str, Any],
        request_id: int,
        authorization: str | None,
        *,
        name: str | None,
        extra_headers: Mapping[str, str] | None,
    ) -> Exchange:
        headers = await self._headers(authorization)
        headers["Content-Type"] = "application/json"
        if self.stateless:
            headers["Mcp-Method"] = method
            if name is not None:
                headers["Mcp-Name"] = name
            meta = dict(params.get("_meta", {}))
            meta.setdefault(_PROTOCOL_VERSION_META, self.protocol_version)
            meta.setdefault(_CLIENT_CAPABILITIES_META, _CAPABILITIES)
            params = {**params, "_meta": meta}
        headers.update(extra_headers or {})
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        self.timeline.record(
            self.name,
            "send",
            request_id=str(request_id),
            token=_bearer(authorization),
            method=method,
        )
        request = self._http.build_request("POST", self.url, headers=headers, json=body)
        return await self._exchange(request, request_id)

    async def _resume(self, last_event_id: str, request_id: int) -> Exchange:
        async def send(authorization: str | None) -> Exchange:
            headers = await self._headers(authorization)
            headers["Accept"] = "text/event-stream"
            headers["Last-Event-ID"] = last_event_id
            self.timeline.record(
                self.name,
                "send",
                request_id=str(request_id),
                token=_bearer(authorization),
                method="GET",
            )
            request = self._http.build_request("GET", self.url, headers=headers)
            return await self._exchange(request, request_id)

        return await self._with_auth(send, request_id)

    async def _exchange(self, request: httpx.Request, request_id: int) -> Exchange:
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            return Exchange(0, "", {}, transport_error=f"{type(exc).__name__}: {exc}")
        try:
            content_type = response.headers.get("content-type", "")
            exchange = Exchange(response.status_code, content_type, dict(response.headers))
            if exchange.is_sse and response.status_code == 200:
                await self._read_sse(response, exchange, request_id)
            else:
                exchange.body = await response.aread()
                _parse_json_body(exchange, request_id)
            return exchange
        except httpx.HTTPError as exc:
            return Exchange(
                response.status_code,
                response.headers.get("content-type", ""),
                dict(response.headers),
                cut=True,
                transport_error=f"{type(exc).__name__}: {exc}",
            )
        finally:
            await response.aclose()

    async def _read_sse(
        self, response: httpx.Response, exchange: Exchange, request_id: int
    ) -> None:
        chunks: list[str] = []
        events = _sse_events(response)
        try:
            async for event in events:
                if event.id is not None:
                    exchange.last_event_id = event.id
                if not event.data:
                    continue
                chunks.append(event.data)
                try:
                    message = json.loads(event.data)
                except ValueError:
                    continue
                if not isinstance(message, dict):
                    continue
                exchange.messages.append(message)
                self.timeline.record(
                    self.name,
                    "sse.event",
                    request_id=str(request_id),
                    event_id=event.id,
                    method=message.get("method"),
                )
                if message.get("id") == request_id and "method" not in message:
                    exchange.response = message
                    break
                if "method" in message and "id" in message:
                    exchange.unanswered = await self._answer(message, request_id)
                    if exchange.unanswered is not None:
                        break
        except httpx.HTTPError as exc:
            exchange.transport_error = f"{type(exc).__name__}: {exc}"
        else:
            await _finish(response, events)
        exchange.body = "\n".join(chunks).encode()
        if exchange.response is None and exchange.unanswered is None:
            exchange.cut = True
            self.timeline.record(
                self.name,
                "stream.cut",
                request_id=str(request_id),
                last_event_id=exchange.last_event_id,
                # A clean end without the response, or a broken connection or body.
                broken=exchange.transport_error is not None,
            )

    async def _answer(self, message: dict[str, Any], request_id: int) -> str | None:
        """Answer a server request met on a call's stream with a POST (through the auth strategy,
        like any send); say why not if it could not be delivered."""
        method = str(message.get("method"))
        answer: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"]}
        if method in _ANSWERS:
            answer["result"] = _ANSWERS[method]
        else:
            answer["error"] = {"code": -32601, "message": f"Method not found: {method}"}
        self.timeline.record(self.name, "server.request", request_id=str(request_id), method=method)

        async def send(authorization: str | None) -> Exchange:
            headers = await self._headers(authorization)
            headers["Content-Type"] = "application/json"
            self.timeline.record(
                self.name,
                "send",
                request_id=str(request_id),
                token=_bearer(authorization),
                method=f"answer {method}",
            )
            post = self._http.build_request("POST", self.url, headers=headers, json=answer)
            return await self._exchange(post, request_id)

        sent = await self._with_auth(send, request_id)
        if sent.status == 202:
            return None
        why = f"could not answer {method}: HTTP {sent.status or sent.transport_error}"
        self.timeline.record(self.name, "answer.failed", request_id=str(request_id), error=why)
        return why

    # -- the standalone GET stream -------------------------------------------------------------

    async def open_get_stream(self, *, last_event_id: str | None = None) -> int:
        """Open the GET SSE stream; events are collected in the background. Return the status."""
        if self._get_task is not None and not self._get_task.done():
            self._get_task.cancel()
            await asyncio.gather(self._get_task, return_exceptions=True)
        authorization = await self.auth.authorization() if self.auth is not None else None
        headers = await self._headers(authorization)
        headers["Accept"] = "text/event-stream"
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        request = self._http.build_request("GET", self.url, headers=headers)
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            self.timeline.record(self.name, "get.failed", error=type(exc).__name__)
            return 0
        self.timeline.record(
            self.name,
            "get.open",
            status=response.status_code,
            token=_bearer(authorization),
            last_event_id=last_event_id,
        )
        if response.status_code != 200:
            await response.aclose()
            return response.status_code
        self._get_task = asyncio.create_task(self._pump_get(response))
        return 200

    async def resume_get_stream(self) -> int:
        """Reopen the GET stream with ``Last-Event-ID`` of the last event it delivered."""
        return await self.open_get_stream(last_event_id=self.last_get_event_id)

    async def _pump_get(self, response: httpx.Response) -> None:
        try:
            async for event in _sse_events(response):
                if event.id is not None:
                    self.last_get_event_id = event.id
                if event.data:
                    self.get_events.append(event)
                    self.timeline.record(self.name, "get.event", event_id=event.id)
        except httpx.HTTPError:
            pass
        finally:
            await response.aclose()
            self.timeline.record(self.name, "get.closed", last_event_id=self.last_get_event_id)


async def _finish(response: httpx.Response, events: AsyncIterator[SseEvent]) -> None:
    """Close a stream left mid-way, then run httpx's stream generators to their end (on a closed
    stream they raise at once): an abandoned one is finalized by garbage collection instead,
    which trio reports as a ResourceWarning."""
    await response.aclose()
    with contextlib.suppress(httpx.HTTPError):
        async for _ in events:
            pass


async def _sse_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    event_id: str | None = None
    event_name: str | None = None
    data: list[str] = []
    seen_field = False
    async for line in response.aiter_lines():
        if line == "":
            if seen_field:
                yield SseEvent(event_id, event_name, "\n".join(data))
            event_name, data, seen_field = None, [], False
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        seen_field = True
        if key == "data":
            data.append(value)
        elif key == "id":
            event_id = value
        elif key == "event":
            event_name = value
    if seen_field:
        yield SseEvent(event_id, event_name, "\n".join(data))


def _parse_json_body(exchange: Exchange, request_id: int) -> None:
    if not exchange.content_type.startswith("application/json") or not exchange.body:
        return
    try:
        message = json.loads(exchange.body)
    except ValueError:
        return
    if isinstance(message, dict):
        exchange.messages.append(message)
        if message.get("id") == request_id or "result" in message or "error" in message:
            exchange.response = message


def _outcome(exchange: Exchange) -> CallOutcome:
    if exchange.unanswered is not None:
        return CallOutcome(status=exchange.status, error=exchange.unanswered)
    if exchange.transport_error is not None and exchange.response is None:
        return CallOutcome(status=exchange.status or None, error=exchange.transport_error)
    message = exchange.response
    if exchange.status != 200 or message is None:
        reason = "stream ended without a response" if exchange.cut else f"HTTP {exchange.status}"
        if message is not None and isinstance(message.get("error"), dict):
            reason = f"HTTP {exchange.status}: {message['error'].get('message', '')}"
        return CallOutcome(status=exchange.status, error=reason)
    if "error" in message:
        error = message["error"]
        text = error.get("message", str(error)) if isinstance(error, dict) else str(error)
        return CallOutcome(status=200, error=f"JSON-RPC error: {text}")
    result = message.get("result")
    if not isinstance(result, dict):
        return CallOutcome(status=200, error="response without a result")
    outcome = CallOutcome(status=200, result=result)
    if result.get("isError"):
        outcome.error = "tool error"
    return outcome


def _progress(messages: list[dict[str, Any]]) -> list[float]:
    values: list[float] = []
    for message in messages:
        if message.get("method") == "notifications/progress":
            params = message.get("params") or {}
            value = params.get("progress")
            if isinstance(value, int | float):
                values.append(float(value))
    return values


def _bearer(authorization: str | None) -> str | None:
    if authorization is None:
        return None
    return authorization.removeprefix("Bearer ").strip() or None
