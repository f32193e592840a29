"""Benchmark process: the fake OAuth AS and the fake MCP server (in-process validation).

Real clock, JSON responses by default (a request picks SSE through ``_meta``), 401 on a dead
bearer. Announces the URLs and two seeded token pairs: one static bearer for the direct client
and one refresh token for the proxy's token source.
"""

from __future__ import annotations

import asyncio
from typing import Any

from _worker import command_loop

from freshtoken import Timeline
from freshtoken.fakes import FakeAuthorizationServer, FakeMCPServer


async def main() -> None:
    timeline = Timeline()
    async with (
        FakeAuthorizationServer(timeline=timeline) as authorization,
        # JSON answers unless a request asks for SSE (the fake's own default is SSE).
        FakeMCPServer(authorization_server=authorization, response_mode="json") as mcp,
    ):
        direct = authorization.issue_tokens(scope="mcp")
        proxied = authorization.issue_tokens(scope="mcp")

        async def clear() -> int:
            # Every request leaves events behind; a long run must not grow the list forever.
            seq = len(timeline)
            timeline.clear()
            return seq

        async def event_times(kind: str) -> dict[str, float]:
            return {
                str(event.detail["event_id"]): event.time
                for event in timeline.select(actor="mcp", kind=kind)
                if "event_id" in event.detail
            }

        async def stats() -> dict[str, Any]:
            return {**authorization.core.stats(), "sessions": len(mcp.sessions)}

        async def rotate() -> None:
            authorization.rotate()

        await command_loop(
            {
                "mcp_url": mcp.url,
                "token_endpoint": authorization.token_endpoint,
                "rotate_url": authorization.control_url + "rotate",
                "client_id": authorization.client_id,
                "client_secret": authorization.client_secret,
                "access_token": direct.access_token,
                "refresh_token": proxied.refresh_token,
            },
            {
                "clear": clear,
                "event_times": event_times,
                "rotate": rotate,
                "stats": stats,
            },
        )


if __name__ == "__main__":
    asyncio.run(main())
