"""Thread-safe handles on the objects the fixtures serve from their background loop.

The fakes and the proxy live on one event loop in a background thread (as pytest-httpserver's
server does), so a test may use them from a sync function, from pytest-asyncio's loop in any
scope, or from anyio on asyncio or trio. A test holds a :func:`remote` handle instead of the
object itself: attribute reads pass through, and methods run on the objects' own loop, so a
control such as ``rotate()`` or ``drop_sessions()`` never races the request it affects.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar, cast

from freshtoken._threadloop import LoopThread

__all__ = ["CALL_TIMEOUT", "RemoteCall", "remote", "target_of"]

T = TypeVar("T")

CALL_TIMEOUT = 30.0
"""Real seconds a control call may take on the background loop (a bound, not a pace)."""


class RemoteCall(Generic[T]):
    """An async method already running on the fixtures' loop.

    ``await`` it from an async test (asyncio or trio; cancelling the await cancels the call), or
    call :meth:`result` from a sync test.
    """

    def __init__(self, future: concurrent.futures.Future[T], what: str, thread: LoopThread) -> None:
        self._future = future
        self._what = what
        self._thread = thread

    def result(self, timeout: float = CALL_TIMEOUT) -> T:
        """Wait (at most ``timeout`` real seconds) and return the call's result."""
        if self._thread.in_thread():
            # The call runs on this very thread's loop: blocking here would wait forever.
            raise RuntimeError(f"{self._what}: on the fixtures' own loop, await it instead")
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            self._future.cancel()
            raise TimeoutError(f"{self._what} did not finish within {timeout} s") from None

    def __await__(self) -> Generator[Any, None, T]:
        return self._wait().__await__()

    async def _wait(self) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # Not asyncio (trio through anyio, say): wait in a worker thread of that library.
            import anyio.to_thread

            try:
                return await anyio.to_thread.run_sync(self.result, abandon_on_cancel=True)
            except BaseException:
                self._future.cancel()
                raise
        return await asyncio.wrap_future(self._future)

    def __repr__(self) -> str:
        return f"<RemoteCall {self._what}>"


class _Handle:
    __slots__ = ("_freshtoken_target", "_freshtoken_thread")

    def __init__(self, target: object, thread: LoopThread) -> None:
        object.__setattr__(self, "_freshtoken_target", target)
        object.__setattr__(self, "_freshtoken_thread", thread)

    # isinstance() and type-aware reprs see the object itself.
    @property  # type: ignore[misc]
    def __class__(self) -> type[Any]:
        return type(object.__getattribute__(self, "_freshtoken_target"))

    def __getattr__(self, name: str) -> Any:
        target = object.__getattribute__(self, "_freshtoken_target")
        thread: LoopThread = object.__getattribute__(self, "_freshtoken_thread")
        value = getattr(target, name)
        if not inspect.ismethod(value):
            return value
        if inspect.iscoroutinefunction(value):
            return _async_method(thread, value, f"{type(target).__name__}.{name}()")
        return _sync_method(thread, value)

    def __setattr__(self, name: str, value: Any) -> None:
        target = object.__getattribute__(self, "_freshtoken_target")
        thread: LoopThread = object.__getattribute__(self, "_freshtoken_thread")
        thread.call(setattr, target, name, value, timeout=CALL_TIMEOUT)

    def __dir__(self) -> list[str]:
        return dir(object.__getattribute__(self, "_freshtoken_target"))

    def __repr__(self) -> str:
        return repr(object.__getattribute__(self, "_freshtoken_target"))


def _sync_method(thread: LoopThread, method: Callable[..., T]) -> Callable[..., T]:
    def call(*args: Any, **kwargs: Any) -> T:
        return thread.call(method, *args, timeout=CALL_TIMEOUT, **kwargs)

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


def _async_method(
    thread: LoopThread, method: Callable[..., Coroutine[Any, Any, T]], what: str
) -> Callable[..., RemoteCall[T]]:
    def call(*args: Any, **kwargs: Any) -> RemoteCall[T]:
        return RemoteCall(thread.submit(method(*args, **kwargs)), what, thread)

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


def remote(target: T, thread: LoopThread) -> T:
    """A handle on ``target`` (which lives on ``thread``'s loop) that any thread may use.

    Typed as ``target``'s own type, and ``isinstance`` agrees; async methods return a
    :class:`RemoteCall` to await (or ``.result()`` in sync code).
    """
    return cast(T, _Handle(target, thread))


def target_of(handle: T) -> T:
    """The object behind a :func:`remote` handle (the object itself if it is none)."""
    if type(handle) is _Handle:
        return cast(T, object.__getattribute__(handle, "_freshtoken_target"))
    return handle
