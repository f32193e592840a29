"""Shared harness for the fake MCP server tests: a fake AS + fake MCP server + a raw httpx client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from freshtoken import ManualClock, Timeline
from freshtoken.fakes import FakeAuthorizationServer, FakeCA, FakeMCPServer, OAuthCore

ACCEPT_BOTH = "application/json, text/event-stream"
_DEFAULT: Any = object()


@dataclass
class SSEEvent:
    id: str | None = None
    event: str | None = None
    data: str = ""
    retry: int | None = None

    @property
    def message(self) -> Any:
        return json.loads(self.data) if self.data else None


async def sse_events(response: httpx.Response) -> AsyncIterator[SSEEvent]:
    """Parse an SSE body incrementally, one event at a time."""
    current = SSEEvent()
    lines: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if lines or current.id is not None or current.retry is not None:
                current.data = "\n".join(lines)
                yield current
            current, lines = SSEEvent(), []
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            lines.append(value)
        elif name == "id":
            current.id = value
        elif name == "event":
            current.event = value
        elif name == "retry":
            current.retry = int(value)


def message(response: httpx.Response) -> Any:
    """The JSON-RPC message a read response carries: its JSON body, or the last message of its
    SSE body (the fake answers POSTs with SSE unless told otherwise)."""
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        return response.json()
    data = [
        "\n".join(
            line[5:].removeprefix(" ") for line in block.splitlines() if line.startswith("data:")
        )
        for block in response.text.split("\n\n")
    ]
    messages = [json.loads(item) for item in data if item]
    assert messages, response.text
    return messages[-1]


def rpc(method: str, params: Mapping[str, Any] | None = None, *, id: Any = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        message["params"] = dict(params)
    return message


@dataclass
class MCPHarness:
    server: FakeMCPServer
    core: OAuthCore | None
    clock: ManualClock
    client: httpx.AsyncClient
    access_token: str | None
    refresh_token: str | None
    authorization_server: FakeAuthorizationServer | None = None
    session_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def timeline(self) -> Timeline:
        return self.server.timeline

    def headers(
        self, *, token: Any = _DEFAULT, session: Any = _DEFAULT, accept: str = ACCEPT_BOTH
    ) -> dict[str, str]:
        out = {"Accept": accept, "Content-Type": "application/json", **self.extra}
        token = self.access_token if token is _DEFAULT else token
        if token is not None:
            out["Authorization"] = f"Bearer {token}"
        session = self.session_id if session is _DEFAULT else session
        if session is not None:
            out["Mcp-Session-Id"] = session
        return out

    async def post(self, message: Any, **kwargs: Any) -> httpx.Response:
        headers = {
            **self.headers(
                **{k: kwargs.pop(k) for k in list(kwargs) if k in ("token", "session", "accept")}
            ),
            **kwargs.pop("headers", {}),
        }
        return await self.client.post(self.server.url, json=message, headers=headers, **kwargs)

    async def initialize(self, version: str = "2025-11-25") -> str:
        response = await self.post(
            rpc(
                "initialize",
                {
                    "protocolVersion": version,
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"},
                },
            ),
            session=None,
        )
        assert response.status_code == 200, response.text
        self.session_id = response.headers["Mcp-Session-Id"]
        self.extra["MCP-Protocol-Version"] = version
        ack = await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert ack.status_code == 202
        return self.session_id

    async def call(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        id: Any = 2,
        meta: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        params: dict[str, Any] = {"name": name, "arguments": dict(arguments or {})}
        if meta is not None:
            params["_meta"] = dict(meta)
        return await self.post(rpc("tools/call", params, id=id), **kwargs)

    async def body(self, response: httpx.Response) -> Any:
        """The JSON-RPC message of a JSON response, or the last message of an SSE response."""
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            messages = [e.message async for e in sse_events(response) if e.data]
            return messages[-1]
        return response.json()


@asynccontextmanager
async def mcp_harness(
    *, tls: bool = False, auth: bool = True, scope: str | None = None, **server_kwargs: Any
) -> AsyncIterator[MCPHarness]:
    """A fake AS and fake MCP server sharing a manual clock, plus an httpx client trusting them."""
    clock = ManualClock()
    ca = FakeCA() if tls else None
    try:
        server_ssl = ca.server_ssl_context() if ca is not None else None
        verify: Any = ca.client_ssl_context() if ca is not None else True
        async with FakeAuthorizationServer(clock=clock, ssl_context=server_ssl) as authz:
            if ca is not None and server_kwargs.get("validation") == "introspection":
                server_kwargs.setdefault("introspection_ssl_context", ca.client_ssl_context())
            server_kwargs.setdefault("clock", clock)
            mcp = FakeMCPServer(
                authorization_server=authz if auth else None,
                ssl_context=server_ssl,
                **server_kwargs,
            )
            async with mcp, httpx.AsyncClient(verify=verify, timeout=10) as client:
                pair = authz.issue_tokens(scope=scope) if auth else None
                yield MCPHarness(
                    server=mcp,
                    core=authz.core if auth else None,
                    clock=clock,
                    client=client,
                    access_token=pair.access_token if pair else None,
                    refresh_token=pair.refresh_token if pair else None,
                    authorization_server=authz,
                )
                mcp.check()
    finally:
        if ca is not None:
            ca.close()


@asynccontextmanager
async def get_stream(
    h: MCPHarness, *, session: str | None = None, last_event_id: str | None = None
) -> AsyncIterator[asyncio.Queue[Any]]:
    """Open the session's GET stream; its messages arrive on the queue as they come (the priming
    event as ``None``)."""
    headers = h.headers(session=session or h.session_id, accept="text/event-stream")
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    queue: asyncio.Queue[Any] = asyncio.Queue()
    opened = asyncio.Event()

    async def pump() -> None:
        async with h.client.stream("GET", h.server.url, headers=headers) as response:
            assert response.status_code == 200, await response.aread()
            opened.set()
            async for event in sse_events(response):
                await queue.put(event.message)

    task = asyncio.create_task(pump())
    try:
        await asyncio.wait_for(opened.wait(), 5)
        yield queue
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def next_message(queue: asyncio.Queue[Any], *, skip_priming: bool = True) -> Any:
    """The next message on a stream queue (bounded wait)."""
    while True:
        message = await asyncio.wait_for(queue.get(), 5)
        if message is not None or not skip_priming:
            return message
