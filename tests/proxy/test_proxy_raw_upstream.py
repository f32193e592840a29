"""The proxy against a raw loopback upstream that scripts every byte."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from proxy_raw_server import raw_server, reply

from freshtoken.proxy import Proxy, StaticTokenSource


class _RawSource:
    """A token source outside the built-in ones: the proxy checks what it hands out."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token

    async def refresh(self, stale: str | None) -> str:
        return self._token


async def test_a_token_with_a_line_break_is_refused_not_sent() -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        writer.write(reply(b"{}"))
        await writer.drain()

    async with raw_server(script) as raw, Proxy() as proxy:
        url = proxy.register("up", raw.origin + "/mcp", _RawSource("t\r\nX-Evil: 1"))
        async with aiohttp.ClientSession() as http, http.post(url, data=b"{}") as resp:
            assert resp.status == 503
    assert raw.requests == []


async def test_a_client_gone_before_the_upstream_answers_closes_the_upstream_connection() -> None:
    asked = asyncio.Event()

    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        asked.set()
        await reader.read()  # never answers; returns once the proxy closes the connection

    async with raw_server(script) as raw, Proxy() as proxy:
        url = proxy.register("up", raw.origin + "/mcp", StaticTokenSource("t"))
        async with aiohttp.ClientSession() as http:
            call = asyncio.ensure_future(http.post(url, data=b"{}"))
            await asyncio.wait_for(asked.wait(), 5)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
        await asyncio.wait_for(raw.disconnected.wait(), 5)


async def test_a_malformed_upstream_response_is_a_502_that_says_so() -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n{}")
        await writer.drain()

    async with raw_server(script) as raw, Proxy() as proxy:
        url = proxy.register("up", raw.origin + "/mcp", StaticTokenSource("t"))
        async with aiohttp.ClientSession() as http:
            payload = {"jsonrpc": "2.0", "id": 9, "method": "tools/list"}
            async with http.post(url, json=payload) as resp:
                assert resp.status == 502
                body = await resp.json()
    assert body["id"] == 9
    assert body["error"]["message"].startswith("target up: upstream request failed: malformed")
