"""Moving the manual clock for whatever sleeps on it, told by the clock itself."""

from __future__ import annotations

import asyncio

from freshtoken import ManualClock
from freshtoken.scenarios._clockwork import drive_clock


async def _paced(clock: ManualClock, ticks: int, pace: float) -> int:
    for _ in range(ticks):
        await clock.sleep(pace)
    return ticks


async def test_moves_time_exactly_as_far_as_the_sleepers_need() -> None:
    clock = ManualClock(start=0)
    tasks = [
        asyncio.ensure_future(_paced(clock, 3, 1.0)),
        asyncio.ensure_future(_paced(clock, 2, 1.0)),
    ]
    assert await drive_clock(clock, advance=1.0, timeout=5, until=tasks)
    assert [task.result() for task in tasks] == [3, 2]
    assert clock.time() == 3.0


async def test_tasks_that_need_no_time_end_it_at_once() -> None:
    clock = ManualClock(start=0)
    task = asyncio.ensure_future(_paced(clock, 0, 1.0))
    assert await drive_clock(clock, advance=1.0, timeout=5, until=[task])
    assert clock.time() == 0


async def test_a_task_that_waits_on_something_else_is_bounded() -> None:
    clock = ManualClock(start=0)
    never = asyncio.get_running_loop().create_future()
    assert not await drive_clock(clock, advance=1.0, timeout=0.1, until=[never])
    assert clock.time() == 0
    never.cancel()


async def test_quiet_ends_it_when_nothing_sleeps_any_more() -> None:
    clock = ManualClock(start=0)
    task = asyncio.ensure_future(_paced(clock, 2, 5.0))
    assert await drive_clock(clock, advance=5.0, timeout=5, quiet=0.05)
    assert task.done()
    assert clock.time() == 10.0
