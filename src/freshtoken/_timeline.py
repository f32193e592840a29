"""One structured timeline shared by the fakes, the proxy and the harness.

Raw tokens never enter the timeline: callers hand a raw token to :meth:`Timeline.record`
and only its fingerprint is stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Event", "Timeline", "fingerprint"]


def fingerprint(secret: str | bytes | None) -> str | None:
    """Return a short, stable, non-reversible label for a token or secret (8 hex of SHA-256)."""
    if secret is None:
        return None
    data = secret.encode() if isinstance(secret, str) else secret
    return hashlib.sha256(data).hexdigest()[:8]


class _Clock(Protocol):
    def time(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened: who, what, when, to which request, with which token.

    ``time`` is on the timeline's clock (a manual clock in tests); ``elapsed`` is the real time,
    in seconds, since the timeline was created.
    """

    seq: int
    time: float
    actor: str
    kind: str
    request_id: str | None = None
    token: str | None = None
    status: int | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    elapsed: float | None = None

    def format(self, *, origin: float | None = None) -> str:
        """One line. With ``origin`` (the timeline's start on its clock) the clock time reads as
        ``+seconds`` since then, beside the real elapsed milliseconds; fields without a value
        are left out."""
        when = f"{self.time:12.3f}" if origin is None else f"{f'+{self.time - origin:.3f}s':>11}"
        real = "" if self.elapsed is None else f" {f'{self.elapsed * 1000:.1f}ms':>9}"
        parts = [f"{self.seq:>4} {when}{real} {self.actor:<6} {self.kind:<22}"]
        if self.request_id is not None:
            parts.append(f"req={self.request_id}")
        if self.token is not None:
            parts.append(f"tok={self.token}")
        if self.status is not None:
            parts.append(f"status={self.status}")
        parts.extend(f"{k}={v}" for k, v in self.detail.items() if v is not None)
        return " ".join(parts).rstrip()


@dataclass(slots=True)
class _Waiter:
    predicate: Callable[[Event], bool]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Event]


class Timeline:
    """An append-only, thread-safe list of :class:`Event` with awaitable predicates."""

    def __init__(self, clock: _Clock | None = None, *, max_events: int | None = None) -> None:
        """``max_events`` keeps only the newest events (a ring buffer for long-running servers);
        sequence numbers keep counting, so ``since=`` stays valid after old events are dropped.
        """
        if max_events is not None and max_events < 1:
            raise ValueError(f"max_events must be at least 1, got {max_events}")
        self._clock = clock
        self.origin = clock.time() if clock is not None else time.time()
        """When the timeline started, on its clock: what :meth:`format` counts from."""
        self._started = time.perf_counter()
        self._events: deque[Event] = deque(maxlen=max_events)
        self._next_seq = 0
        # Reentrant: wait_for predicates run under the lock and may themselves query the timeline.
        self._lock = threading.RLock()
        self._waiters: list[_Waiter] = []

    def record(
        self,
        actor: str,
        kind: str,
        *,
        request_id: str | None = None,
        token: str | None = None,
        token_fingerprint: str | None = None,
        status: int | None = None,
        **detail: Any,
    ) -> Event:
        """Append an event. ``token`` is a raw token and is stored only as its fingerprint."""
        now = self._clock.time() if self._clock is not None else time.time()
        elapsed = time.perf_counter() - self._started
        with self._lock:
            event = Event(
                seq=self._next_seq,
                time=now,
                actor=actor,
                kind=kind,
                request_id=request_id,
                token=fingerprint(token) if token is not None else token_fingerprint,
                status=status,
                detail=detail,
                elapsed=elapsed,
            )
            self._next_seq += 1
            self._events.append(event)
            ready = [w for w in self._waiters if w.predicate(event)]
            for waiter in ready:
                self._waiters.remove(waiter)
        for waiter in ready:
            waiter.loop.call_soon_threadsafe(_resolve, waiter.future, event)
        return event

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)

    def select(
        self, *, actor: str | None = None, kind: str | None = None, since: int = 0
    ) -> list[Event]:
        """Events matching ``actor`` and ``kind`` (when given) with ``seq >= since``."""
        return [
            e
            for e in self._since(since)
            if (actor is None or e.actor == actor) and (kind is None or e.kind == kind)
        ]

    def count(self, *, actor: str | None = None, kind: str | None = None, since: int = 0) -> int:
        return len(self.select(actor=actor, kind=kind, since=since))

    async def wait_for(
        self, predicate: Callable[[Event], bool], *, timeout: float = 5.0, since: int = 0
    ) -> Event:
        """Return the first event (``seq >= since``) matching ``predicate``; wait at most ``timeout`` s."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Event] = loop.create_future()
        with self._lock:
            for event in self._since(since):
                if predicate(event):
                    return event
            waiter = _Waiter(predicate, loop, future)
            self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def format(self, *, since: int = 0) -> str:
        """A readable, one-event-per-line rendering (what a failing test prints): sequence number,
        clock time since :attr:`origin`, real time since the timeline was created, actor, kind
        and the fields that have a value."""
        return "\n".join(e.format(origin=self.origin) for e in self._since(since))

    def clear(self) -> None:
        """Drop every event; sequence numbers keep counting, so ``since=`` marks stay valid."""
        with self._lock:
            self._events.clear()

    @property
    def next_seq(self) -> int:
        """The sequence number the next event will get: a ``since=`` mark for "from now on"."""
        with self._lock:
            return self._next_seq

    def _since(self, since: int) -> list[Event]:
        with self._lock:
            if not self._events:
                return []
            skip = max(0, since - self._events[0].seq)
            return list(itertools.islice(self._events, skip, None))


def _resolve(future: asyncio.Future[Event], event: Event) -> None:
    if not future.done():
        future.set_result(event)
