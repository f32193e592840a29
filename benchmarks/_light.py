"""Benchmark process: a light upstream, so that what sits in front of it shows in the figures.

aiohttp's low-level server with one handler that answers every request with a fixed JSON-RPC
result when its bearer is the expected one, else 401: no router, no MCP session, no JSON
parsing. It is what a minimal Python service costs, a fraction of the fake MCP server.
"""

from __future__ import annotations

import asyncio
import os
import resource
import secrets

from _worker import command_loop
from aiohttp import web

_BODY = b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hello"}]}}'


async def main() -> None:
    token = secrets.token_urlsafe(24)
    bearer = f"Bearer {token}"

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        if request.headers.get("Authorization") != bearer:
            return web.Response(
                status=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
        await request.read()
        return web.Response(body=_BODY, content_type="application/json")

    server = web.Server(handler, access_log=None)
    runner = web.ServerRunner(server, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = runner.addresses[0][1]
    try:
        await command_loop(
            {"url": f"http://127.0.0.1:{port}/mcp", "token": token, "pid": os.getpid()}, {}
        )
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main())
