"""The proxy against a raw loopback upstream that scripts every byte."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest

from freshtoken.proxy import Proxy, StaticTokenSource

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int, int], Awaitable[None]]


class RawServer:
    """Counts connections and requests; ``script(reader, writer, on_connection, overall)``
    answers a request by its number on its connection and overall (both from 1)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []
        self.disconnected = asyncio.Event()
        self.origin = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        count = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                self.requests.append(head + await reader.readexactly(length))
                count += 1
                await self.script(reader, writer, count, len(self.requests))
        except (asyncio.IncompleteReadError, ConnectionError):
            self.disconnected.set()
        finally:
            writer.close()


@asynccontextmanager
async def raw_server(script: Script) -> AsyncIterator[RawServer]:
    raw = RawServer(script)
    server = await asyncio.start_server(raw.serve, "127.0.0.1", 0)
    raw.origin = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield raw
    finally:
        server.close()


def _reply(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def test_a_token_with_a_line_break_is_refused_not_sent() -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        writer.write(_reply(b"{}"))
        await writer.drain()

    async with raw_server(script) as raw, Proxy() as proxy:
        url = proxy.register("up", raw.origin + "/mcp", StaticTokenSource("t\r\nX-Evil: 1"))
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
