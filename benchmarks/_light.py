"""Benchmark process: a light upstream, so that what sits in front of it dominates the cost.

A raw asyncio HTTP/1.1 keep-alive server (requests framed by llhttp through ``httptools``) that
answers every POST with one fixed JSON-RPC result when its bearer is the expected one, else 401.
No MCP session, no JSON parsing: per request it costs a fraction of the fake MCP server.
"""

from __future__ import annotations

import asyncio
import os
import resource
import secrets

import httptools
from _worker import command_loop

_BODY = b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hello"}]}}'
_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(_BODY),
    _BODY,
)
_DENIED = b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer error="invalid_token"\r\nContent-Length: 0\r\n\r\n'


class _Connection(asyncio.Protocol):
    def __init__(self, bearer: bytes) -> None:
        self._bearer = bearer
        self._parser = httptools.HttpRequestParser(self)
        self._authorized = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_begin(self) -> None:
        self._authorized = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"authorization" and value == self._bearer:
            self._authorized = True

    def on_message_complete(self) -> None:
        if self.transport is not None:
            self.transport.write(_OK if self._authorized else _DENIED)


async def main() -> None:
    token = secrets.token_urlsafe(24)
    bearer = f"Bearer {token}".encode()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(bearer), "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    async with server:
        await command_loop(
            {"url": f"http://127.0.0.1:{port}/mcp", "token": token, "pid": os.getpid()}, {}
        )


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main())
