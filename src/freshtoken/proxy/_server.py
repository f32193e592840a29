"""The proxy's listening side: aiohttp's low-level server with nginx's downstream limits.

aiohttp bounds idle keep-alive connections but not a request head that never completes, nor the
number of open connections; a local flood of half-sent requests would otherwise hold every file
descriptor and starve legitimate clients. Here every connection has a header deadline, and at the
connection cap the oldest connection that is not serving a request makes room for the new one.
Malformed requests are logged as one line without the request line (it carries the capability
secret) and without a traceback, and repeated lines are rate-limited.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from freshtoken.proxy._limits import Limits

if sys.platform != "win32":
    import resource

__all__ = ["AcceptErrorGuard", "ProxyServer", "Throttle", "effective_max_connections"]

log = logging.getLogger("freshtoken.proxy")

# aiohttp's own server logger would print a traceback holding the raw request line.
_SILENT = logging.getLogger("freshtoken.proxy.silenced")
_SILENT.disabled = True
_SILENT.propagate = False

# File descriptors kept for everything that is not a client connection (the listening socket,
# token-endpoint connections, a store file, the event loop's own).
_FD_RESERVE = 32


def effective_max_connections(limit: int) -> int:
    """``limit``, lowered to half the open-file limit: each client may need an upstream socket."""
    if sys.platform == "win32":
        return limit
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return limit
    return max(1, min(limit, (soft - _FD_RESERVE) // 2))


class Throttle:
    """At most ``burst`` log lines per ``window`` seconds for one kind of event; the rest are
    counted and reported in one line when the next window opens."""

    def __init__(self, what: str, *, burst: int = 10, window: float = 10.0) -> None:
        self.what = what
        self.burst = burst
        self.window = window
        self._start = -window
        self._count = 0
        self._suppressed = 0

    def allow(self) -> bool:
        now = time.monotonic()
        if now - self._start >= self.window:
            if self._suppressed:
                log.warning(
                    "%d more %s in the last %.0f s", self._suppressed, self.what, self.window
                )
            self._start, self._count, self._suppressed = now, 0, 0
        self._count += 1
        if self._count > self.burst:
            self._suppressed += 1
            return False
        return True


class _Connection(RequestHandler):
    """One client connection: aiohttp's handler plus a header deadline and one-line errors."""

    def __init__(self, manager: ProxyServer, *, loop: asyncio.AbstractEventLoop, **kwargs: Any):
        super().__init__(manager, loop=loop, **kwargs)
        self.logger = _SILENT
        self._server = manager
        self._header_handle: asyncio.TimerHandle | None = None
        # Requests whose head arrived and whose response is not finished yet.
        self._unanswered = 0
        # Bytes of a request head arrived and the head is not complete yet.
        self.head_pending = False

    @property
    def serving(self) -> bool:
        """A request is being handled (or waits its turn): the connection must not be cut."""
        return self._unanswered > 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # As nginx: the first request head must arrive within header_timeout of the accept.
        self._arm()

    def data_received(self, data: bytes) -> None:
        count = self._request_count
        super().data_received(data)
        if self._request_count != count:
            self._unanswered += self._request_count - count
            self.head_pending = False
            self._disarm()
        elif data and not self._unanswered:
            # The first byte of the next request on a kept-alive connection starts its deadline
            # (a request body, or a pipelined head, arrives while a request is unanswered).
            self.head_pending = True
            if self._header_handle is None:
                self._arm()

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._unanswered = max(0, self._unanswered - 1)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_handle = self._loop.call_later(
            self._server.limits.header_timeout, self._header_timed_out
        )

    def _disarm(self) -> None:
        handle, self._header_handle = self._header_handle, None
        if handle is not None:
            handle.cancel()

    def _header_timed_out(self) -> None:
        self._header_handle = None
        if not self.serving and self.transport is not None:
            log.debug("closing a client connection: no complete request head in time")
            self.force_close()

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        name = type(exc).__name__ if isinstance(exc, BaseException) else "error"
        malformed = isinstance(exc, HttpProcessingError)
        if self._server.bad_requests.allow():
            log.warning(
                "%s: %s", "a malformed client request" if malformed else "a request failed", name
            )
        if not malformed:
            # A fault of the proxy itself: its traceback is worth having, at debug level only.
            log.debug("request failure detail", exc_info=exc)


class ProxyServer(web.Server):
    """aiohttp's low-level server with a connection cap that evicts before it refuses."""

    def __init__(self, handler: Any, *, limits: Limits) -> None:
        super().__init__(
            handler,
            # Cancelling the handler of a client that went away closes its upstream request.
            handler_cancellation=True,
            access_log=None,
            keepalive_timeout=limits.keepalive_timeout,
        )
        self.limits = limits
        self.max_connections = effective_max_connections(limits.max_connections)
        self.bad_requests = Throttle("failed client requests")
        self.evictions = Throttle("client connections closed to make room")
        # Insertion-ordered: the first entries are the oldest connections.
        self._open: dict[_Connection, None] = {}

    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        assert isinstance(handler, _Connection)
        self._open[handler] = None
        if len(self._open) > self.max_connections:
            self._make_room(handler)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        self._open.pop(handler, None)  # type: ignore[call-overload]

    def _make_room(self, newcomer: _Connection) -> None:
        # A half-sent request head first (what a flood holds), then an idle keep-alive
        # connection (its client reconnects); a connection serving a request is never cut.
        victim = next(
            (c for c in self._open if c is not newcomer and c.head_pending and not c.serving),
            None,
        ) or next((c for c in self._open if c is not newcomer and not c.serving), None)
        if victim is None:
            victim = newcomer
        if self.evictions.allow():
            log.warning(
                "%d client connections open (max %d): closing the oldest idle one",
                len(self._open),
                self.max_connections,
            )
        del self._open[victim]
        victim.force_close()


class AcceptErrorGuard:
    """Rate-limits the event loop's report of failed ``accept()`` calls on one socket.

    asyncio reports every failed accept (out of file descriptors, say) through the loop's
    exception handler, with a traceback, up to a hundred times per readiness event.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, address: tuple[str, int]) -> None:
        self._loop = loop
        self._address = address
        self._previous = loop.get_exception_handler()
        self.throttle = Throttle("failed accept() calls")
        loop.set_exception_handler(self)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        sock = context.get("socket")
        if (
            str(context.get("message", "")).startswith("socket.accept()")
            and sock is not None
            and _address(sock) == self._address
        ):
            if self.throttle.allow():
                exc = context.get("exception")
                log.error("accepting a client connection failed: %s", exc or "unknown error")
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)

    def close(self) -> None:
        if self._loop.get_exception_handler() is self:
            self._loop.set_exception_handler(self._previous)


def _address(sock: Any) -> tuple[str, int] | None:
    try:
        name = sock.getsockname()
    except OSError:
        return None
    return (name[0], name[1]) if isinstance(name, tuple) else None
