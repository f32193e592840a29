"""The fake talking back to its clients: cancellation, server requests and their answers,
notifications a JSON response cannot carry, SEP-1699 polling, list_changed and resource updates
(GET streams through 2025-11-25, ``subscriptions/listen`` in 2026-07-28)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from mcp_helpers import MCPHarness, get_stream, mcp_harness, message, next_message, rpc, sse_events

from freshtoken import SystemClock

ANSWER = {"role": "assistant", "content": {"type": "text", "text": "ok"}, "model": "m"}
SAMPLING = {"sampling": {}}


async def initialize(h: MCPHarness, capabilities: dict[str, Any] | None = None) -> str:
    response = await h.post(
        rpc(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": capabilities or {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        ),
        session=None,
    )
    h.session_id = response.headers["Mcp-Session-Id"]
    h.extra["MCP-Protocol-Version"] = "2025-11-25"
    assert (
        await h.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
    ).status_code == 202
    return h.session_id


def stream_call(count: int, pace: float, id: int = 2) -> dict[str, Any]:
    return rpc(
        "tools/call",
        {
            "name": "stream",
            "arguments": {"count": count, "pace": pace},
            "_meta": {"progressToken": "p"},
        },
        id=id,
    )


def cancel(request_id: Any, reason: str = "user gave up") -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": request_id, "reason": reason},
    }


async def test_cancelled_stops_a_streaming_tool_and_is_recorded() -> None:
    async with mcp_harness() as h:
        await h.initialize()
        async with h.client.stream(
            "POST", h.server.url, json=stream_call(5, 1), headers=h.headers()
        ) as response:
            events = sse_events(response)
            assert (await anext(events)).data == ""  # priming
            await h.clock.wait_for_sleepers(1)
            h.clock.advance(1)
            first = (await anext(events)).message
            assert first["params"]["progress"] == 1
            await h.clock.wait_for_sleepers(1)
            assert (await h.post(cancel(2))).status_code == 202
            rest = [event.message async for event in events]
        assert rest == []  # no more progress, and no response for a cancelled request
        assert h.clock.sleepers == 0
        (cancelled,) = h.timeline.select(actor="mcp", kind="request.cancelled")
        assert cancelled.request_id == "2"
        assert cancelled.detail["reason"] == "user gave up"
        h.server.check()


async def test_cancelled_in_json_mode_answers_request_cancelled() -> None:
    async with mcp_harness(response_mode="json") as h:
        await h.initialize()
        call = asyncio.ensure_future(h.post(stream_call(5, 1, id="abc")))
        await h.clock.wait_for_sleepers(1)
        # 1 and "1" are different ids: cancelling the wrong one changes nothing.
        await h.post(cancel(7))
        assert h.timeline.count(actor="mcp", kind="cancel.unknown") == 1
        await h.post(cancel("abc"))
        answered = await asyncio.wait_for(call, 5)
        assert message(answered)["error"]["code"] == -32800
        assert h.clock.sleepers == 0
        h.server.check()


async def test_a_json_response_records_the_notifications_it_cannot_carry() -> None:
    async with mcp_harness(response_mode="json") as h:
        await h.initialize()
        answered = await h.post(stream_call(3, 0))
        assert message(answered)["result"]["content"][0]["text"] == "streamed 3 events"
        dropped = h.timeline.select(actor="mcp", kind="notification.dropped")
        assert [e.detail["method"] for e in dropped] == ["notifications/progress"] * 3
        assert {e.request_id for e in dropped} == {"2"}


async def test_server_requests_travel_on_the_post_stream_and_answers_come_back() -> None:
    async with mcp_harness(clock=SystemClock()) as h:
        await initialize(h, SAMPLING)
        call = rpc("tools/call", {"name": "test_sampling", "arguments": {"prompt": "hi"}}, id=3)
        async with h.client.stream(
            "POST", h.server.url, json=call, headers=h.headers()
        ) as response:
            events = (event.message async for event in sse_events(response) if event.data)
            asked = await anext(events)
            assert asked["method"] == "sampling/createMessage"
            assert asked["params"]["messages"][0]["content"]["text"] == "hi"
            unexpected = await h.post({"jsonrpc": "2.0", "id": "nobody-asked", "result": {}})
            assert unexpected.status_code == 202
            answer = await h.post({"jsonrpc": "2.0", "id": asked["id"], "result": ANSWER})
            assert answer.status_code == 202
            result = await anext(events)
        assert result["result"]["content"][0]["text"] == "LLM response: ok"
        assert h.timeline.count(actor="mcp", kind="client.response") == 1
        assert h.timeline.count(actor="mcp", kind="client.response.unexpected") == 1
        (seen,) = [
            e for e in h.timeline.select(actor="mcp", kind="request") if e.detail.get("answers")
        ]
        assert seen.detail["answers"] == "sampling/createMessage"


async def test_a_client_error_answer_and_a_missing_capability_are_tool_failures() -> None:
    async with mcp_harness(clock=SystemClock()) as h:
        await initialize(h, SAMPLING)
        call = rpc("tools/call", {"name": "test_sampling", "arguments": {"prompt": "hi"}}, id=3)
        async with h.client.stream(
            "POST", h.server.url, json=call, headers=h.headers()
        ) as response:
            events = (event.message async for event in sse_events(response) if event.data)
            asked = await anext(events)
            refusal = {
                "jsonrpc": "2.0",
                "id": asked["id"],
                "error": {"code": -1, "message": "no LLM"},
            }
            await h.post(refusal)
            result = await anext(events)
        assert result["error"]["code"] == -1
        assert "no LLM" in result["error"]["message"]
        unable = await h.call("test_elicitation", {"message": "m"})
        assert message(unable)["result"]["isError"] is True
        assert "elicitation capability" in message(unable)["result"]["content"][0]["text"]


async def test_in_json_mode_server_requests_use_the_get_stream_or_fail_clearly() -> None:
    async with mcp_harness(response_mode="json", clock=SystemClock()) as h:
        await initialize(h, SAMPLING)
        alone = await h.call("test_sampling", {"prompt": "x"})
        assert "no GET stream open" in message(alone)["error"]["message"]
        assert h.timeline.count(actor="mcp", kind="server.request.undeliverable") == 1
        async with get_stream(h) as queue:
            call = asyncio.ensure_future(h.call("test_sampling", {"prompt": "y"}, id=4))
            asked = await next_message(queue)
            assert asked["method"] == "sampling/createMessage"
            await h.post({"jsonrpc": "2.0", "id": asked["id"], "result": ANSWER})
            answered = await asyncio.wait_for(call, 5)
        assert message(answered)["result"]["content"][0]["text"] == "LLM response: ok"


async def test_an_unanswered_server_request_times_out_in_real_time() -> None:
    async with mcp_harness(clock=SystemClock(), client_timeout=0.05) as h:
        await initialize(h, SAMPLING)
        answered = await h.call("test_sampling", {"prompt": "x"})
        assert (
            "did not answer sampling/createMessage within 0.05 s"
            in message(answered)["error"]["message"]
        )
        assert h.timeline.count(actor="mcp", kind="server.request.timeout") == 1
        assert h.server._pending == {}


async def test_sse_polling_ends_the_response_and_the_result_follows_the_reconnection() -> None:
    async with mcp_harness() as h:
        await h.initialize()
        call = rpc("tools/call", {"name": "test_reconnection", "arguments": {}}, id=5)
        async with h.client.stream(
            "POST", h.server.url, json=call, headers=h.headers()
        ) as response:
            events = [event async for event in sse_events(response)]
        # Only the priming event (an id and a retry time): the response ended before the result.
        assert [(e.data, e.retry) for e in events] == [("", 100)]
        assert h.timeline.count(actor="mcp", kind="sse.closed") == 1
        async with get_stream(h, last_event_id=events[0].id) as queue:
            resumed = await next_message(queue)
        assert resumed["id"] == 5
        assert resumed["result"]["content"][0]["text"] == "Reconnection test completed"


async def test_list_changed_and_resource_updates_reach_the_get_streams_that_should_get_them() -> (
    None
):
    async with mcp_harness() as h:
        quiet = await h.initialize()
        watcher = await h.initialize()
        assert (
            await h.post(rpc("resources/subscribe", {"uri": "test://watched-resource"}))
        ).status_code == 200
        async with (
            get_stream(h, session=quiet) as quiet_queue,
            get_stream(h, session=watcher) as queue,
        ):
            h.server.notify_resource_updated("test://watched-resource")
            # From another thread, as a test using the background-thread fixtures would.
            await asyncio.to_thread(h.server.notify_list_changed, "tools")
            updated = await next_message(queue)
            assert updated == {
                "jsonrpc": "2.0",
                "method": "notifications/resources/updated",
                "params": {"uri": "test://watched-resource"},
            }
            assert (await next_message(queue))["method"] == "notifications/tools/list_changed"
            # The unsubscribed session got only the list change.
            assert (await next_message(quiet_queue))["method"] == "notifications/tools/list_changed"
            control = await h.client.post(
                f"{h.server.control_url}/notify", json={"list_changed": "prompts"}
            )
            assert control.json() == {"notified": True}
            assert (await next_message(queue))["method"] == "notifications/prompts/list_changed"
        await h.post(rpc("resources/unsubscribe", {"uri": "test://watched-resource"}))
        h.server.notify_resource_updated("test://watched-resource")
        sent = h.timeline.select(actor="mcp", kind="notification.sent")
        assert [e.detail["delivered"] for e in sent] == [1, 2, 2, 0]
        bad = await h.client.post(f"{h.server.control_url}/notify", json={"list_changed": "moods"})
        assert bad.status_code == 400
        assert bad.json()["error_description"] == (
            "POST /_freshtoken/notify: list_changed: must be tools, resources or prompts"
        )
        with pytest.raises(ValueError, match="kind must be"):
            h.server.notify_list_changed("moods")  # type: ignore[arg-type]


async def test_a_session_without_a_get_stream_has_its_notification_recorded_undelivered() -> None:
    async with mcp_harness() as h:
        session = await h.initialize()
        h.server.notify_list_changed("resources")
        (undelivered,) = h.timeline.select(actor="mcp", kind="notification.undelivered")
        assert undelivered.detail == {
            "method": "notifications/resources/list_changed",
            "session": session,
        }


async def test_2026_listen_streams_get_what_they_opted_in_to_and_a_result_at_shutdown() -> None:
    version = "2026-07-28"
    meta = {
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    listen = rpc(
        "subscriptions/listen",
        {
            "notifications": {
                "toolsListChanged": True,
                "resourceSubscriptions": ["test://watched-resource"],
                "unknownThing": True,
            },
            "_meta": meta,
        },
        id=9,
    )
    headers = {"MCP-Protocol-Version": version, "Mcp-Method": "subscriptions/listen"}
    received: list[Any] = []
    async with mcp_harness(protocol_version=version) as h:
        client = httpx.AsyncClient(timeout=10)
        async with client.stream(
            "POST", h.server.url, json=listen, headers={**h.headers(), **headers}
        ) as response:
            events = (event.message async for event in sse_events(response) if event.data)
            received.append(await anext(events))
            h.server.notify_list_changed("prompts")  # not asked for
            h.server.notify_list_changed("tools")
            received.append(await anext(events))
            h.server.notify_resource_updated("test://watched-resource")
            received.append(await anext(events))
            await h.server.stop()
            received.extend([m async for m in events])
        await client.aclose()
    assert received[0] == {
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": {
            "notifications": {
                "toolsListChanged": True,
                "resourceSubscriptions": ["test://watched-resource"],
            }
        },
    }
    assert received[1]["method"] == "notifications/tools/list_changed"
    assert received[2]["params"] == {"uri": "test://watched-resource"}
    assert received[3]["id"] == 9
    assert received[3]["result"]["_meta"] == {"io.modelcontextprotocol/subscriptionId": 9}


@pytest.mark.parametrize("mode", ["sse", "json"])
async def test_the_conformance_tools_that_pause_finish_on_a_clock_nobody_moves(mode: str) -> None:
    async with mcp_harness(response_mode=mode) as h:  # a ManualClock that never advances
        await h.initialize()
        for tool in ("test_tool_with_progress", "test_tool_with_logging"):
            answered = await asyncio.wait_for(h.call(tool, {}, meta={"progressToken": "t"}), 5)
            assert "result" in message(answered), tool
        assert h.clock.sleepers == 0
