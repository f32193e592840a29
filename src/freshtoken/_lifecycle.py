"""The async-context-manager shape shared by every server and proxy: ``start``/``stop``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

__all__ = ["AsyncLifecycle"]


class AsyncLifecycle(ABC):
    """``async with thing:`` starts ``thing`` on entry and stops it on exit, whatever happened.

    Subclasses implement :meth:`start` and an idempotent :meth:`stop`; callers that cannot use
    ``async with`` call the two directly.
    """

    @abstractmethod
    async def start(self) -> None:
        """Acquire what the object needs (sockets, clients) and begin serving."""

    @abstractmethod
    async def stop(self) -> None:
        """Release everything :meth:`start` acquired; safe to call more than once."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
