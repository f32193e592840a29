from __future__ import annotations

import pytest
from mcp_helpers import mcp_harness, message, rpc, sse_events

from freshtoken import fingerprint

pytestmark = pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])


async def test_initialize_list_and_call_tools_in_a_session(tls: bool) -> None:
    async with mcp_harness(tls=tls) as h:
        session = await h.initialize()
        assert session in h.server.sessions
        listed = await h.post(rpc("tools/list", id=5))
        names = {tool["name"] for tool in message(listed)["result"]["tools"]}
        assert {"echo", "add", "whoami", "stream"} <= names
        echo = await h.call("echo", {"text": "hi"})
        assert message(echo)["result"]["content"][0]["text"] == "hi"
        add = await h.call("add", {"a": 2, "b": 3})
        assert message(add)["result"]["content"][0]["text"] == "5"
        who = await h.call("whoami")
        assert message(who)["result"]["content"][0]["text"] == fingerprint(h.access_token)
        ping = await h.post(rpc("ping", id=9))
        assert message(ping) == {"jsonrpc": "2.0", "id": 9, "result": {}}
        assert h.timeline.count(actor="mcp", kind="session.created") == 1


async def test_sse_response_carries_priming_event_then_result(tls: bool) -> None:
    async with mcp_harness(tls=tls, response_mode="sse") as h:
        await h.initialize()
        async with h.client.stream(
            "POST",
            h.server.url,
            json=rpc("tools/call", {"name": "echo", "arguments": {"text": "x"}}),
            headers=h.headers(),
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = [e async for e in sse_events(response)]
        assert events[0].data == ""
        assert events[0].retry == 100
        assert events[0].id is not None
        assert events[-1].message["result"]["content"][0]["text"] == "x"
        assert events[-1].id is not None
        assert h.timeline.count(actor="mcp", kind="sse.event") == 2  # initialize + echo
