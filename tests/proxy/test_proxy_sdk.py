"""The official MCP Python SDK, configured with only the proxy's local URL, survives rotations."""

from __future__ import annotations

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from freshtoken import Timeline, fingerprint
from freshtoken.fakes import FakeAuthorizationServer, FakeMCPServer
from freshtoken.proxy import Proxy, RefreshTokenSource


@pytest.mark.parametrize(
    ("style", "mode"),
    [("401", "json"), ("200-jsonrpc", "json"), ("200-jsonrpc", "sse"), ("200-posthog", "sse")],
)
async def test_sdk_session_survives_three_server_side_rotations(style: str, mode: str) -> None:
    timeline = Timeline()
    async with (
        FakeAuthorizationServer(timeline=timeline) as auth,
        FakeMCPServer(
            authorization_server=auth,
            timeline=timeline,
            auth_failure_style=style,
            response_mode=mode,  # type: ignore[arg-type]
        ) as mcp,
        Proxy(timeline=timeline) as proxy,
    ):
        pair = auth.issue_tokens(resource=mcp.url)
        source = RefreshTokenSource(
            auth.token_endpoint,
            auth.client_id,
            auth.client_secret,
            refresh_token=pair.refresh_token,
            resource=mcp.url,
        )
        url = proxy.register("fake", mcp.url, source)
        progress: list[float] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)

        async with (
            httpx2.AsyncClient() as http,
            streamable_http_client(url, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            seen_tokens = set()
            for rotation in range(4):
                if rotation:
                    auth.rotate()
                whoami = await session.call_tool("whoami", {})
                assert not whoami.is_error
                seen_tokens.add(whoami.content[0].text)  # type: ignore[union-attr]
                assert whoami.content[0].text == fingerprint(source.current)  # type: ignore[union-attr]
                echo = await session.call_tool("echo", {"text": f"r{rotation}"})
                assert echo.content[0].text == f"r{rotation}"  # type: ignore[union-attr]
                progress.clear()
                streamed = await session.call_tool(
                    "stream",
                    {"count": 3, "pace": 0},
                    progress_callback=on_progress,
                    # Progress needs a stream: ask for SSE even from a JSON-mode server.
                    meta={"freshtoken/responseMode": "sse"},
                )
                assert not streamed.is_error
                assert streamed.content[0].text == "streamed 3 events"  # type: ignore[union-attr]
                assert progress == [1, 2, 3]
        assert len(seen_tokens) == 4
        assert timeline.count(actor="proxy", kind="refresh.done") == 4  # first fetch + 3
        assert timeline.count(actor="proxy", kind="auth.failure") == 3
        auth.check()
        mcp.check()
