from __future__ import annotations

import asyncio
import threading

import pytest

from freshtoken import ManualClock, Timeline, fingerprint


def test_raw_tokens_are_stored_only_as_fingerprints() -> None:
    timeline = Timeline()
    event = timeline.record("as", "token.issued", token="s3cret-access-token", status=200)
    assert event.token == fingerprint("s3cret-access-token")
    assert len(event.token or "") == 8
    assert "s3cret" not in timeline.format()
    assert "s3cret" not in repr(timeline.events)


def test_events_carry_clock_time_and_sequence() -> None:
    clock = ManualClock(start=10.0)
    timeline = Timeline(clock)
    timeline.record("mcp", "request", request_id="1")
    clock.advance(3)
    timeline.record("proxy", "refresh", request_id="2")
    assert [(e.seq, e.time, e.actor) for e in timeline] == [(0, 10.0, "mcp"), (1, 13.0, "proxy")]
    assert timeline.count(actor="proxy") == 1
    assert timeline.count(kind="request") == 1
    assert timeline.select(since=1)[0].kind == "refresh"


async def test_wait_for_returns_a_past_or_future_event() -> None:
    timeline = Timeline()
    timeline.record("as", "token.issued")
    past = await timeline.wait_for(lambda e: e.kind == "token.issued", timeout=1)
    assert past.seq == 0

    waiter = asyncio.create_task(timeline.wait_for(lambda e: e.status == 401, timeout=1))
    await asyncio.sleep(0)
    thread = threading.Thread(
        target=timeline.record, args=("mcp", "response"), kwargs={"status": 401}
    )
    thread.start()
    thread.join()
    assert (await waiter).status == 401


async def test_wait_for_is_bounded() -> None:
    with pytest.raises(TimeoutError):
        await Timeline().wait_for(lambda e: True, timeout=0.01)


async def test_a_predicate_may_query_the_timeline_itself() -> None:
    timeline = Timeline()
    waiter = asyncio.create_task(
        timeline.wait_for(lambda e: timeline.count(kind="response") >= 2, timeout=1)
    )
    await asyncio.sleep(0)
    timeline.record("mcp", "response")
    timeline.record("mcp", "response")
    assert (await waiter).seq == 1
    assert (await timeline.wait_for(lambda e: timeline.count() == 2, timeout=1)).seq == 0
