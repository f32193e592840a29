from __future__ import annotations

import asyncio

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
    while clock.sleepers < 2:
        await asyncio.sleep(0)
    clock.advance(4.9)
    await asyncio.sleep(0)
    assert woke == []
    clock.advance(0.1)
    await asyncio.wait_for(tasks[1], 1)
    assert woke == ["early"]
    clock.advance(5)
    await asyncio.wait_for(tasks[0], 1)
    assert woke == ["early", "late"]
