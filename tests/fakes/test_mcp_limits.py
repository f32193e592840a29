"""Big bodies round-trip whole, and a long run keeps the fake's memory bounded."""

from __future__ import annotations

import httpx
import pytest
from mcp_helpers import mcp_harness, message, rpc

from freshtoken import ManualClock, Timeline
from freshtoken.fakes import FakeAuthorizationServer, FakeMCPServer
from freshtoken.proxy import Limits, Proxy, RefreshTokenSource

FIVE_MB = 5 * 1024 * 1024


def _echo(text: str, id: int = 7) -> dict[str, object]:
    return rpc("tools/call", {"name": "echo", "arguments": {"text": text}}, id=id)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["sse", "json"])
async def test_a_5_mb_echo_round_trips_directly_and_through_the_proxy(mode: str) -> None:
    text = "0123456789abcdef" * (FIVE_MB // 16)
    clock = ManualClock()
    timeline = Timeline(clock)
    async with (
        FakeAuthorizationServer(clock=clock, timeline=timeline) as auth,
        FakeMCPServer(
            authorization_server=auth,
            response_mode=mode,
            max_body=8 << 20,  # type: ignore[arg-type]
        ) as server,
        Proxy(timeline=timeline, limits=Limits(max_body=8 << 20)) as proxy,
        httpx.AsyncClient(timeout=30) as client,
    ):
        pair = auth.issue_tokens(resource=server.url)
        source = RefreshTokenSource(
            auth.token_endpoint,
            auth.client_id,
            auth.client_secret,
            refresh_token=pair.refresh_token,
            access_token=pair.access_token,
            resource=server.url,
            clock=clock,
        )
        local = proxy.register("fake", server.url, source)
        accept = {"Accept": "application/json, text/event-stream"}
        for url, bearer in [(server.url, pair.access_token), (local, None)]:
            headers = dict(accept)
            if bearer is not None:
                headers["Authorization"] = f"Bearer {bearer}"
            init = await client.post(
                url,
                json=rpc(
                    "initialize",
                    {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "t", "version": "1"},
                    },
                ),
                headers=headers,
            )
            headers["Mcp-Session-Id"] = init.headers["Mcp-Session-Id"]
            response = await client.post(url, json=_echo(text), headers=headers)
            assert response.status_code == 200
            assert message(response)["result"]["content"][0]["text"] == text
        server.check()


async def test_a_long_run_keeps_sessions_streams_and_the_timeline_bounded() -> None:
    timeline = Timeline(ManualClock(), max_events=300)
    async with mcp_harness(
        auth=False, timeline=timeline, max_sessions=10, max_streams_per_session=2
    ) as h:
        rounds = 60
        for round_number in range(rounds):
            await h.initialize()  # a client that never DELETEs its session
            for call in range(4):
                answered = await h.call("echo", {"text": f"{round_number}-{call}"}, id=call + 2)
                assert message(answered)["result"]["content"][0]["text"] == f"{round_number}-{call}"
        stats = (await h.client.get(f"{h.server.control_url}/stats")).json()
        assert stats["requests"] == rounds * 6  # initialize, initialized, four calls
        assert stats["sessions"] == 10
        assert stats["streams"] <= 10 * 2
        assert stats["running"] == 0
        assert stats["timeline_events"] == len(timeline) == 300
        assert timeline.next_seq > 1000  # events kept coming; only the newest are held
        assert h.timeline.count(kind="session.evicted") > 0
        assert len(h.server._pending) == 0
