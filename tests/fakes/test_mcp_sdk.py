"""The official MCP Python SDK client against the fake, with a token from the fake AS."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_helpers import mcp_harness

from freshtoken import SystemClock, fingerprint


@pytest.mark.parametrize("response_mode", ["json", "sse"])
@pytest.mark.parametrize("protocol_version", ["2025-11-25", "2026-07-28"])
async def test_sdk_client_initializes_lists_and_calls(
    protocol_version: str, response_mode: str
) -> None:
    async with mcp_harness(
        protocol_version=protocol_version, response_mode=response_mode, clock=SystemClock()
    ) as h:
        progress: list[float] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)

        headers = {"Authorization": f"Bearer {h.access_token}"}
        async with (
            httpx2.AsyncClient(headers=headers) as http,
            streamable_http_client(h.server.url, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            if protocol_version == "2026-07-28":
                await session.discover()
            else:
                await session.initialize()
            tools = await session.list_tools()
            assert {"echo", "stream", "whoami"} <= {t.name for t in tools.tools}
            echo = await session.call_tool("echo", {"text": "hello"})
            assert not echo.is_error
            assert _text(echo) == "hello"
            who = await session.call_tool("whoami", {})
            assert _text(who) == fingerprint(h.access_token)
            streamed = await session.call_tool(
                "stream", {"count": 3, "pace": 0}, progress_callback=on_progress
            )
            assert _text(streamed) == "streamed 3 events"
        if response_mode == "sse":
            assert progress == [1, 2, 3]
        kinds = {e.kind for e in h.timeline.select(actor="mcp")}
        assert "auth.rejected" not in kinds
        if protocol_version == "2026-07-28":
            assert "session.created" not in kinds


def _text(result: Any) -> str:
    text: str = result.content[0].text
    return text
