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


def test_clear_keeps_sequence_numbers_so_since_marks_stay_valid() -> None:
    timeline = Timeline()
    timeline.record("a", "one")
    timeline.record("a", "two")
    mark = timeline.next_seq
    timeline.clear()
    assert timeline.select() == []
    event = timeline.record("a", "three")
    assert event.seq == 2
    assert [e.kind for e in timeline.select(since=mark)] == ["three"]
    assert timeline.count(since=mark + 1) == 0


def test_max_events_keeps_the_newest_and_since_still_counts_by_seq() -> None:
    timeline = Timeline(max_events=3)
    for n in range(10):
        timeline.record("a", f"e{n}")
    assert [e.kind for e in timeline.events] == ["e7", "e8", "e9"]
    assert [e.kind for e in timeline.select(since=8)] == ["e8", "e9"]
    assert [e.kind for e in timeline.select(since=0)] == ["e7", "e8", "e9"]
    assert timeline.next_seq == 10


async def test_wait_for_since_ignores_events_before_the_mark_after_clear() -> None:
    timeline = Timeline()
    timeline.record("a", "old")
    mark = timeline.next_seq
    timeline.clear()
    timeline.record("a", "new")
    found = await timeline.wait_for(lambda e: e.actor == "a", since=mark, timeout=1)
    assert found.kind == "new"


def test_max_events_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_events"):
        Timeline(max_events=0)
