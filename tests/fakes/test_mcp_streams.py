"""SSE streams on a manual clock: pacing, cuts, resumption, garbage, stream auth, cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from mcp_helpers import MCPHarness, mcp_harness, message, rpc, sse_events

from freshtoken.fakes import (
    CutStream,
    Delay,
    DropSessions,
    Fault,
    GarbageChunk,
    Match,
    Rotate,
    SetResponseMode,
    Status401,
)

SOCKETS = pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])


def stream_call(count: int, pace: float, *, id: int = 2, token: str = "p") -> dict[str, Any]:
    return rpc(
        "tools/call",
        {
            "name": "stream",
            "arguments": {"count": count, "pace": pace},
            "_meta": {"progressToken": token},
        },
        id=id,
    )


async def advance_until(h: MCPHarness, events: int) -> None:
    """Advance the manual clock one pace step at a time until ``events`` sse.event were written."""
    while h.timeline.count(actor="mcp", kind="sse.event") < events:
        mark = h.timeline.next_seq
        await h.clock.wait_for_sleepers(1)
        h.clock.advance(1)
        await h.timeline.wait_for(lambda e: e.kind == "sse.event", since=mark)


@SOCKETS
async def test_stream_tool_paces_on_the_clock(tls: bool) -> None:
    async with mcp_harness(tls=tls, response_mode="sse") as h:
        await h.initialize()
        since = h.timeline.next_seq
        async with h.client.stream(
            "POST", h.server.url, json=stream_call(3, 1), headers=h.headers()
        ) as response:
            received: list[Any] = []
            reader = sse_events(response)
            first = await anext(reader)
            assert first.data == ""  # priming event
            for _n in range(3):
                # The tool is due to write nothing until the clock moves past its pace.
                await h.clock.wait_for_sleepers(1)
                assert h.timeline.count(actor="mcp", kind="sse.event", since=since) == _n
                h.clock.advance(1)
                received.append((await anext(reader)).message)
            received.append((await anext(reader)).message)
        assert [m["params"]["progress"] for m in received[:3]] == [1, 2, 3]
        assert all(m["params"]["progressToken"] == "p" for m in received[:3])
        assert received[3]["result"]["content"][0]["text"] == "streamed 3 events"
        ids = [
            e.detail["event_id"]
            for e in h.timeline.select(actor="mcp", kind="sse.event", since=since)
        ]
        assert len(set(ids)) == 4


@SOCKETS
@pytest.mark.parametrize("mode", ["close", "reset"])
async def test_cut_stream_then_resume_with_last_event_id(tls: bool, mode: str) -> None:
    async with mcp_harness(tls=tls) as h:
        await h.initialize()
        h.server.faults.add(Fault(Match(tool="stream", sse_event=1), CutStream(mode=mode)))
        seen: list[Any] = []
        with pytest.raises(httpx.HTTPError) if mode == "reset" else _nothing():
            async with h.client.stream(
                "POST", h.server.url, json=stream_call(3, 0), headers=h.headers()
            ) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                seen = [e async for e in sse_events(response)]
        cut = await h.timeline.wait_for(lambda e: e.kind == "sse.cut")
        assert cut.detail["mode"] == mode
        if mode == "close":
            assert [e.message["params"]["progress"] for e in seen if e.data] == [1]
        last_id = h.timeline.select(actor="mcp", kind="sse.event")[-1].detail["event_id"]
        headers = {**h.headers(), "Last-Event-ID": last_id}
        async with h.client.stream("GET", h.server.url, headers=headers) as resumed:
            replay = [e async for e in sse_events(resumed)]
        messages = [e.message for e in replay]
        assert [m["params"]["progress"] for m in messages[:2]] == [2, 3]
        assert messages[-1]["result"]["content"][0]["text"] == "streamed 3 events"


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def test_garbage_chunk_is_written_into_the_stream() -> None:
    async with mcp_harness() as h:
        await h.initialize()
        h.server.faults.add(Fault(Match(tool="echo"), GarbageChunk()))
        response = await h.call("echo", {"text": "x"})
        assert response.headers["content-type"].startswith("text/event-stream")
        assert b"garbage" in response.content
        assert h.timeline.select(actor="mcp", kind="fault")[-1].detail["action"] == "garbage-chunk"


async def test_meta_hint_and_fault_pick_the_response_mode() -> None:
    async with mcp_harness() as h:
        await h.initialize()
        hinted = await h.call("echo", {"text": "x"}, meta={"freshtoken/responseMode": "sse"})
        assert hinted.headers["content-type"].startswith("text/event-stream")
        h.server.faults.add(Fault(Match(tool="echo"), SetResponseMode(mode="json")))
        forced = await h.call("echo", {"text": "x"}, meta={"freshtoken/responseMode": "sse"})
        assert forced.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("stream_auth", ["event-error", "cut"])
async def test_token_dying_mid_stream(stream_auth: str) -> None:
    async with mcp_harness(response_mode="sse", stream_auth=stream_auth) as h:
        await h.initialize()
        h.server.faults.add(Fault(Match(tool="stream", sse_event=1), Rotate()))
        response = await h.post(stream_call(3, 0))
        events = [e async for e in sse_events(response) if e.data]
        if stream_auth == "event-error":
            assert events[-1].message["error"]["data"]["error"] == "authentication_failed"
        else:
            assert h.timeline.count(actor="mcp", kind="sse.cut") == 1
        assert [e.message["params"]["progress"] for e in events if "params" in e.message] == [1]
        assert (
            h.timeline.select(actor="mcp", kind="auth.rejected")[-1].detail["style"]
            == f"stream-{stream_auth}"
        )


async def test_start_only_stream_auth_lets_the_stream_finish_after_rotation() -> None:
    async with mcp_harness(response_mode="sse") as h:
        await h.initialize()
        h.server.faults.add(Fault(Match(tool="stream", sse_event=1), Rotate()))
        body = await h.body(await h.post(stream_call(3, 0)))
        assert body["result"]["content"][0]["text"] == "streamed 3 events"


async def test_stateless_client_disconnect_cancels_the_request() -> None:
    async with mcp_harness(protocol_version="2026-07-28", response_mode="sse") as h:
        message = stream_call(5, 1)
        message["params"]["_meta"].update(
            {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            }
        )
        headers = {
            **h.headers(session=None),
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": "tools/call",
            "Mcp-Name": "stream",
        }
        async with h.client.stream("POST", h.server.url, json=message, headers=headers) as response:
            reader = sse_events(response)
            await advance_until(h, 1)
            assert (await anext(reader)).message["params"]["progress"] == 1
        await h.timeline.wait_for(lambda e: e.kind == "stream.cancelled", timeout=5)
        producers = set(h.server._tasks)
        done, _ = await asyncio.wait(producers, timeout=5) if producers else (set(), set())
        assert all(task.cancelled() for task in done)
        assert not h.server._tasks  # the producer was cancelled with the response
        assert h.clock.sleepers == 0  # and the tool no longer waits to send its next event


async def test_standalone_get_stream_and_delete_session() -> None:
    async with mcp_harness() as h:
        await h.initialize()
        async with h.client.stream("GET", h.server.url, headers=h.headers()) as stream:
            reader = sse_events(stream)
            assert (await anext(reader)).data == ""  # priming
            deleted = await h.client.delete(h.server.url, headers=h.headers())
            assert deleted.status_code == 200
            rest = [e async for e in reader]
        assert rest == []
        assert h.timeline.count(actor="mcp", kind="session.deleted") == 1
        gone = await h.call("echo", {"text": "x"})
        assert gone.status_code == 404


async def test_drop_sessions_fault_and_control_endpoint() -> None:
    async with mcp_harness() as h:
        await h.initialize()
        h.server.faults.add(Fault(Match(tool="echo"), DropSessions()))
        assert (await h.call("echo", {"text": "x"})).status_code == 404
        assert h.timeline.count(actor="mcp", kind="session.dropped") == 1
        await h.initialize()
        dropped = await h.client.post(f"{h.server.control_url}/drop-sessions")
        assert message(dropped) == {"dropped": 1}
        assert (await h.call("echo", {"text": "x"})).status_code == 404


async def test_delay_fault_waits_on_the_clock() -> None:
    async with mcp_harness() as h:
        await h.initialize()
        h.server.faults.add(Fault(Match(tool="echo"), Delay(seconds=30)))
        call = asyncio.ensure_future(h.call("echo", {"text": "late"}))
        await h.clock.wait_for_sleepers(1)
        h.clock.advance(29)
        await h.clock.wait_for_sleepers(1)
        assert not call.done()
        h.clock.advance(1)
        assert message(await asyncio.wait_for(call, 5))["result"]["content"][0]["text"] == "late"


async def test_at_time_fault_fires_once_the_clock_passes() -> None:
    async with mcp_harness() as h:
        await h.initialize()
        h.server.faults.add(Fault(Match(at_time=h.clock.time() + 60), Status401(), times=None))
        assert (await h.call("echo", {"text": "x"})).status_code == 200
        h.clock.advance(61)
        assert (await h.call("echo", {"text": "x"})).status_code == 401
        assert (await h.call("echo", {"text": "x"})).status_code == 401


async def test_control_endpoint_accepts_faults_and_rotate() -> None:
    async with mcp_harness() as h:
        await h.initialize()
        added = await h.client.post(
            f"{h.server.control_url}/faults",
            json={"match": {"tool": "echo"}, "action": {"kind": "status-5xx", "status": 503}},
        )
        assert message(added)["added"] == 1
        assert (await h.call("echo", {"text": "x"})).status_code == 503
        bad = await h.client.post(
            f"{h.server.control_url}/faults", json={"match": {"tool": 1}, "action": "status-401"}
        )
        assert bad.status_code == 400
        assert message(bad) == {
            "error": "invalid_fault",
            "error_description": "POST /_freshtoken/faults: match.tool: Input should be a valid string",
        }
        for body, line in [
            (
                [{"action": "rotate"}, {"action": {"kind": "status-5xx", "status": 450.5}}],
                "faults[1].action.status: Input should be a valid integer",
            ),
            ({"faults": [{"action": "rotate", "times": 1.5}]}, "faults[0].times: "),
            ({"action": "rotate", "times": 0}, "times: Input should be greater than or equal to 1"),
        ]:
            refused = await h.client.post(f"{h.server.control_url}/faults", json=body)
            assert refused.status_code == 400
            assert message(refused)["error_description"].startswith(
                f"POST /_freshtoken/faults: {line}"
            )
        garbled = await h.client.post(f"{h.server.control_url}/faults", content=b"{nope")
        assert message(garbled)["error_description"] == (
            "POST /_freshtoken/faults: (body): not valid JSON"
        )
        stats = message(await h.client.get(f"{h.server.control_url}/stats"))
        assert stats["faults"] == [
            {
                "match": {"tool": "echo"},
                "action": {"kind": "status-5xx", "status": 503},
                "times": 1,
                "fired": 1,
            }
        ]
        assert stats["requests"] == 3
        listed = await h.client.get(f"{h.server.control_url}/faults")
        assert message(listed)["faults"][0]["action"]["kind"] == "status-5xx"
        assert message(await h.client.delete(f"{h.server.control_url}/faults")) == {"faults": 0}
        rotated = await h.client.post(f"{h.server.control_url}/rotate")
        assert message(rotated) == {"rotated": True}
        assert (await h.call("echo", {"text": "x"})).status_code == 401
