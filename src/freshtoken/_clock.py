"""Clocks: the system clock, and a manual clock the fakes share so expiry never needs a sleep."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What freshtoken needs of a clock: wall time in seconds, and a sleep on that time."""

    def time(self) -> float: ...

    async def sleep(self, delay: float) -> None: ...


class SystemClock:
    """Real time."""

    def time(self) -> float:
        return time.time()

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)


class ManualClock:
    """Time that moves only when told to. Sleepers wake when :meth:`advance` passes their deadline.

    Thread-safe: a test thread may advance a clock whose sleepers live on another thread's loop.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._sleepers: list[
            tuple[float, int, asyncio.AbstractEventLoop, asyncio.Future[None]]
        ] = []
        self._counter = itertools.count()
        self._sleeper_waiters: list[
            tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]
        ] = []

    def time(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (>= 0) and wake every sleeper now due; return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock only moves forward; got advance({seconds})")
        with self._lock:
            self._now += seconds
            now = self._now
            due = []
            while self._sleepers and self._sleepers[0][0] <= now:
                due.append(heapq.heappop(self._sleepers))
        for _, _, loop, future in due:
            loop.call_soon_threadsafe(_wake, future)
        return now

    def set(self, when: float) -> float:
        """Jump to an absolute time no earlier than now."""
        return self.advance(when - self.time())

    async def sleep(self, delay: float) -> None:
        if delay <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            heapq.heappush(self._sleepers, (self._now + delay, next(self._counter), loop, future))
            parked = self._parked()
            ready = [w for w in self._sleeper_waiters if w[0] <= parked]
            for waiter in ready:
                self._sleeper_waiters.remove(waiter)
        for _, waiter_loop, waiter_future in ready:
            waiter_loop.call_soon_threadsafe(_wake, waiter_future)
        await future

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock right now."""
        with self._lock:
            return self._parked()

    async def wait_for_sleepers(self, count: int = 1, *, timeout: float = 5.0) -> None:
        """Return once at least ``count`` tasks sleep on this clock; raise ``TimeoutError`` after
        ``timeout`` real seconds.

        This is how a test (or the runner) knows a timer is armed before it calls :meth:`advance`,
        without polling. The sleepers may live on another thread's loop.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiter = (count, loop, future)
        with self._lock:
            if self._parked() >= count:
                return
            self._sleeper_waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            raise TimeoutError(
                f"fewer than {count} sleeper(s) on the clock after {timeout} s"
            ) from None
        finally:
            with self._lock:
                if waiter in self._sleeper_waiters:
                    self._sleeper_waiters.remove(waiter)

    def _parked(self) -> int:
        return sum(1 for *_, f in self._sleepers if not f.done())


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
