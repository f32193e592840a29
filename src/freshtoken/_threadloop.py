"""An asyncio event loop in a background thread, for callers that are not on it.

The pytest fixtures serve the fakes and the proxy from one (so sync tests, any pytest-asyncio
loop scope and anyio on trio can all reach them), and the Hypothesis state machine drives its
client from one (Hypothesis rules are synchronous). pytest-httpserver runs its server the same
way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Self, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    """A daemon thread running one asyncio event loop until :meth:`stop`.

    :meth:`run` and :meth:`call` are safe from any thread; on the loop's own thread they would
    wait for themselves, so they refuse instead of deadlocking.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._ready = threading.Event()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def start(self, *, timeout: float = 10.0) -> Self:
        """Start the thread; return once its loop runs."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"{self.name}: the event loop did not start within {timeout} s")
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self.loop.is_closed()

    def in_thread(self) -> bool:
        """True when called from the loop's own thread."""
        return threading.get_ident() == self._thread.ident

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coroutine`` on the loop; return a future any thread can wait on.

        It runs in an empty context: a task inherits the context it was scheduled from, and the
        caller's (a trio test's, say) would tell sniffio, and so httpx, that it runs on trio.
        """
        return contextvars.Context().run(asyncio.run_coroutine_threadsafe, coroutine, self.loop)

    def run(self, coroutine: Coroutine[Any, Any, T], *, timeout: float) -> T:
        """Run ``coroutine`` on the loop and return its result; after ``timeout`` seconds cancel
        it and raise :class:`TimeoutError`."""
        if self.in_thread():
            coroutine.close()
            raise RuntimeError(f"{self.name}: run() called from the loop's own thread")
        future = self.submit(coroutine)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"{self.name}: not done within {timeout} s") from None

    def call(self, function: Callable[..., T], *args: Any, timeout: float, **kwargs: Any) -> T:
        """Call ``function(*args, **kwargs)`` on the loop's thread and return its result."""
        if self.in_thread():
            return function(*args, **kwargs)

        async def invoke() -> T:
            return function(*args, **kwargs)

        return self.run(invoke(), timeout=timeout)

    def stop(self, *, timeout: float = 10.0) -> None:
        """Cancel what is still running on the loop, stop it, join the thread, close the loop."""
        if not self._thread.is_alive():
            if not self.loop.is_closed():
                self.loop.close()
            return
        with contextlib.suppress(TimeoutError, RuntimeError):
            self.run(_cancel_leftovers(), timeout=timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()


async def _cancel_leftovers() -> None:
    current = asyncio.current_task()
    leftovers = [task for task in asyncio.all_tasks() if task is not current]
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()
