from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from freshtoken import Timeline
from freshtoken._serve import LoopbackSite
from freshtoken.proxy import Limits, Proxy

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path_qs: str
    headers: dict[str, list[str]]
    body: bytes


@dataclass
class Upstream:
    """A tiny programmable upstream for forwarding mechanics (headers, streaming, failures)."""

    handler: Handler
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        headers: dict[str, list[str]] = {}
        for key, value in request.headers.items():
            headers.setdefault(key.lower(), []).append(value)
        self.seen.append(Seen(request.method, request.raw_path, headers, await request.read()))
        return await self.handler(request)


async def _ok(request: web.Request) -> web.StreamResponse:
    return web.json_response({"jsonrpc": "2.0", "id": 1, "result": {}})


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = Upstream(handler=_ok)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", up.dispatch)
    site = LoopbackSite(app)
    await site.start()
    up.url = site.url
    try:
        yield up
    finally:
        await site.stop()


@pytest.fixture
def timeline() -> Timeline:
    return Timeline()


@pytest.fixture
async def proxy(timeline: Timeline) -> AsyncIterator[Proxy]:
    async with Proxy(timeline=timeline, limits=Limits(sse_peek_timeout=2.0)) as p:
        yield p


class RawMCPClient:
    """A minimal Streamable HTTP client that holds no token (the proxy supplies it)."""

    def __init__(self, http: aiohttp.ClientSession, url: str, version: str = "2025-11-25"):
        self.http = http
        self.url = url
        self.version = version
        self.session_id: str | None = None
        self._ids = itertools.count(1)

    def headers(self) -> dict[str, str]:
        headers = {
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            "MCP-Protocol-Version": self.version,
        }
        if self.session_id is not None:
            headers["Mcp-Session-Id"] = self.session_id
        return headers

    async def initialize(self) -> None:
        status, _ = await self.request(
            "initialize",
            {
                "protocolVersion": self.version,
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        )
        assert status == 200
        resp = await self.http.post(
            self.url,
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers=self.headers(),
        )
        assert resp.status == 202, resp.status
        await resp.read()

    async def request(
        self, method: str, params: dict[str, Any] | None = None, *, mode: str | None = None
    ) -> tuple[int, Any]:
        rid = next(self._ids)
        params = dict(params or {})
        if mode is not None:
            params["_meta"] = {**params.get("_meta", {}), "freshtoken/responseMode": mode}
        message = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
        resp = await self.http.post(self.url, json=message, headers=self.headers())
        if method == "initialize" and "Mcp-Session-Id" in resp.headers:
            self.session_id = resp.headers["Mcp-Session-Id"]
        body = await resp.read()
        ctype = resp.headers.get("Content-Type", "")
        if ctype.startswith("text/event-stream"):
            for message in sse_messages(body):
                if isinstance(message, dict) and message.get("id") == rid:
                    return resp.status, message
            return resp.status, None
        return resp.status, json.loads(body) if body else None

    async def call(
        self, tool: str, arguments: dict[str, Any] | None = None, *, mode: str | None = None
    ) -> tuple[int, Any]:
        return await self.request(
            "tools/call", {"name": tool, "arguments": arguments or {}}, mode=mode
        )


def sse_messages(body: bytes) -> list[Any]:
    messages = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = [line[5:].lstrip(b" ") for line in block.split(b"\n") if line.startswith(b"data:")]
        if data and b"".join(data):
            messages.append(json.loads(b"\n".join(data)))
    return messages


def text_of(message: Any) -> str:
    assert isinstance(message, dict), message
    assert "result" in message, message
    return str(message["result"]["content"][0]["text"])
