from __future__ import annotations

import asyncio
import threading

import pytest

from freshtoken import Clock, ManualClock, SystemClock


def test_manual_clock_only_moves_when_told() -> None:
    clock = ManualClock(start=100.0)
    assert clock.time() == 100.0
    assert clock.advance(5) == 105.0
    assert clock.set(200.0) == 200.0
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)


def test_both_clocks_satisfy_the_protocol() -> None:
    assert isinstance(ManualClock(), Clock)
    assert isinstance(SystemClock(), Clock)


async def test_sleepers_wake_when_the_clock_passes_their_deadline() -> None:
    clock = ManualClock(start=0.0)
    woke: list[str] = []

    async def sleeper(name: str, delay: float) -> None:
        await clock.sleep(delay)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper("late", 10)), asyncio.create_task(sleeper("early", 5))]
    await clock.wait_for_sleepers(2)
    clock.advance(4.9)
    await asyncio.sleep(0)
    assert woke == []
    clock.advance(0.1)
    await asyncio.wait_for(tasks[1], 1)
    assert woke == ["early"]
    clock.advance(5)
    await asyncio.wait_for(tasks[0], 1)
    assert woke == ["early", "late"]


async def test_wait_for_sleepers_returns_once_enough_tasks_sleep() -> None:
    clock = ManualClock(start=0.0)
    waiting = asyncio.ensure_future(clock.wait_for_sleepers(2, timeout=5))
    first = asyncio.ensure_future(clock.sleep(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not waiting.done(), "one sleeper is not two"
    second = asyncio.ensure_future(clock.sleep(1))
    await asyncio.wait_for(waiting, 1)
    assert clock.sleepers == 2
    clock.advance(1)
    await asyncio.wait_for(asyncio.gather(first, second), 1)
    assert clock.sleepers == 0


async def test_wait_for_sleepers_is_bounded() -> None:
    clock = ManualClock(start=0.0)
    with pytest.raises(TimeoutError, match="fewer than 1 sleeper"):
        await clock.wait_for_sleepers(1, timeout=0.05)


def test_wait_for_sleepers_sees_sleepers_on_another_threads_loop() -> None:
    clock = ManualClock(start=0.0)
    woke = threading.Event()

    def other_thread() -> None:
        async def sleep_there() -> None:
            await clock.sleep(3)
            woke.set()

        asyncio.run(sleep_there())

    thread = threading.Thread(target=other_thread)
    thread.start()
    try:
        asyncio.run(clock.wait_for_sleepers(1, timeout=5))
        clock.advance(3)
        assert woke.wait(5)
    finally:
        thread.join(5)
