"""Moving a manual clock for tasks that wait on it, without polling.

Streams, backoffs and delay faults sleep on the shared :class:`~freshtoken.ManualClock`, so they
progress only when time does. The runner and the state machine move time whenever something
sleeps on the clock, and learn that from the clock itself (``wait_for_sleepers``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection
from typing import Any

from freshtoken._clock import ManualClock

__all__ = ["done_or_asleep", "drive_clock"]


async def drive_clock(
    clock: ManualClock,
    *,
    advance: float,
    timeout: float,
    until: Collection[asyncio.Future[Any]] = (),
    quiet: float | None = None,
) -> bool:
    """Advance ``clock`` by ``advance`` seconds each time something sleeps on it.

    Stops when every future in ``until`` is done (when given), when nothing has slept on the
    clock for ``quiet`` real seconds (when given), or after ``timeout`` real seconds. Returns
    False only on the timeout.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = {future for future in until if not future.done()}
    while True:
        if until and not pending:
            return True
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        done, slept = await done_or_asleep(
            clock, pending, timeout=remaining, wait=None if quiet is None else min(quiet, remaining)
        )
        if slept:
            clock.advance(advance)
        elif not done and quiet is not None and loop.time() < deadline:
            return True
        pending = {future for future in pending if not future.done()}


async def done_or_asleep(
    clock: ManualClock,
    watched: Collection[asyncio.Future[Any]],
    *,
    timeout: float,
    wait: float | None = None,
) -> tuple[set[asyncio.Future[Any]], bool]:
    """Wait until one of ``watched`` is done or something sleeps on ``clock``, for at most
    ``wait`` (default ``timeout``) real seconds; ``timeout`` bounds the wait for a sleeper.
    Returns the futures of ``watched`` that are done, and whether something slept."""
    # A task, so waiting always yields to the loop: the tasks woken by the last advance run
    # before the next count, even when something else stays asleep.
    sleeping = asyncio.ensure_future(clock.wait_for_sleepers(1, timeout=timeout))
    try:
        done, _ = await asyncio.wait(
            {*watched, sleeping},
            timeout=timeout if wait is None else wait,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        if not sleeping.done():
            sleeping.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await sleeping
    slept = sleeping in done and not sleeping.cancelled() and sleeping.exception() is None
    done.discard(sleeping)
    return done, slept
