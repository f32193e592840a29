"""A lean HTTP/1.1 client for the proxy's upstream hop: a keep-alive pool and streamed bodies.

A general-purpose client spends most of a small call building objects the proxy never uses
(cookies, redirects, tracing, per-request timers); this one writes the request in one buffer and
lets llhttp (through ``httptools``) frame the response as it arrives, with backpressure on large
bodies. Every failure is an ``OSError``: connecting fails as the socket layer says, anything
after that (a malformed or cut response, a dropped connection) is a :class:`ConnectionError`.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["Upstream", "UpstreamResponse"]

# llhttp does not bound a response head; a peer streaming header bytes forever must not grow
# memory without limit.
_MAX_HEAD = 64 * 1024
_HIGH_WATER = 256 * 1024
# Idle connections kept per origin beyond what the current load needs are closed, not pooled.
_MAX_IDLE = 128
# Methods whose request a server may have dropped with a stale keep-alive connection and that
# are safe to send again on a fresh one (RFC 9110 §9.2.2).
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class UpstreamResponse:
    """Status, headers and a body read with :meth:`read` or piece by piece with :meth:`readany`.

    ``content_length`` is the length of the body that follows (``None`` when it is chunked or
    delimited by the connection closing; ``None`` too when no body can follow, as for HEAD).
    """

    __slots__ = (
        "_chunks",
        "_conn",
        "_eof",
        "_error",
        "_size",
        "_waiter",
        "content_length",
        "headers",
        "keep_alive",
        "reason",
        "status",
    )

    def __init__(
        self,
        conn: _Connection,
        status: int,
        reason: str,
        headers: CIMultiDictProxy[str],
        content_length: int | None,
        keep_alive: bool,
    ) -> None:
        self._conn: _Connection | None = conn
        self.status = status
        self.reason = reason
        self.headers = headers
        self.content_length = content_length
        self.keep_alive = keep_alive
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    async def readany(self) -> bytes:
        """The next piece of the body; ``b""`` at its end."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        # Everything buffered goes out as one piece: a burst of events becomes one write.
        chunks = self._chunks
        chunk = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._size = 0
        conn = self._conn
        if conn is not None and conn.paused:
            conn.resume()
        return chunk

    async def read(self) -> bytes:
        """The whole body."""
        if self._eof and len(self._chunks) == 1:
            self._size = 0
            return self._chunks.popleft()
        parts: list[bytes] = []
        while chunk := await self.readany():
            parts.append(chunk)
        return b"".join(parts)

    def close(self) -> None:
        """Back to the pool if the whole response arrived and keep-alive holds; else drop the
        connection, which is also what tells the upstream to stop working on the request."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.release(self._eof and self.keep_alive)

    # -- fed by the connection ---------------------------------------------------------------

    def _feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        self._wake()

    def _finish(self, error: BaseException | None = None) -> None:
        if error is None:
            self._eof = True
        else:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Connection(asyncio.Protocol):
    """One keep-alive connection to one origin, carrying one exchange at a time.

    It is both the asyncio protocol and the callback object of its ``HttpResponseParser``:
    llhttp decides where every response starts and ends; this class only turns the callbacks
    into an :class:`UpstreamResponse` and decides whether the connection can be used again.
    """

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.paused = False
        self._parser = httptools.HttpResponseParser(self)
        # From send() until the final response is complete: bytes outside it are a protocol
        # error, and they make the connection unusable.
        self._busy = False
        self._head_request = False
        self._head_waiter: asyncio.Future[UpstreamResponse] | None = None
        self._response: UpstreamResponse | None = None
        self._headers: CIMultiDict[str] | None = None
        self._reason = ""
        self._head_bytes = 0
        self._until_close = False
        self._received = False

    # -- the exchange ------------------------------------------------------------------------

    def send(self, data: bytes, head_request: bool) -> asyncio.Future[UpstreamResponse]:
        assert self.transport is not None
        self._busy = True
        self._head_request = head_request
        self._received = False
        self._response = None
        self._head_bytes = 0
        self._until_close = False
        waiter = self._head_waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return waiter

    @property
    def received_anything(self) -> bool:
        return self._received

    def release(self, reusable: bool) -> None:
        self._response = None
        if reusable and not self._busy and not self.closed:
            self._pool.put(self)
        else:
            self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def resume(self) -> None:
        self.paused = False
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        waiter, self._head_waiter = self._head_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError("upstream closed the connection"))
        response = self._response
        if response is not None and not response._eof and response._error is None:
            # httptools cannot hand llhttp the end of input, so a body delimited by the close
            # ends here; a reset is a cut, not an end.
            if self._until_close and exc is None:
                response._finish()
            else:
                response._finish(ConnectionError("upstream closed the connection mid-body"))
        self._busy = False

    def data_received(self, data: bytes) -> None:
        self._received = True
        if not self._busy:
            # Nothing is expected between exchanges: this connection cannot be reused.
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            cause = exc.__context__
            if isinstance(cause, ConnectionError):
                self._fail(cause)
            else:
                self._fail(ConnectionError(f"malformed upstream response: {exc}"))
            return
        if self._busy and self._response is None:
            self._head_bytes += len(data)
            if self._head_bytes > _MAX_HEAD:
                self._fail(ConnectionError("upstream response head too large"))

    def _fail(self, exc: ConnectionError) -> None:
        waiter, self._head_waiter = self._head_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        response = self._response
        if response is not None and not response._eof:
            response._finish(exc)
        self._busy = False
        self.close()

    # -- httptools callbacks (an exception raised here becomes a parser error) ---------------

    def on_message_begin(self) -> None:
        if not self._busy:
            raise ConnectionError("upstream sent data after the response")
        self._headers = CIMultiDict()
        self._reason = ""

    def on_status(self, status: bytes) -> None:
        # llhttp may hand over one span in pieces when it arrives split.
        self._reason += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        # Chunked trailers arrive through this callback too, after the head is out: dropped.
        headers = self._headers
        if headers is not None:
            headers.add(
                name.decode("ascii", "surrogateescape"),
                value.rstrip(b" \t").decode("utf-8", "surrogateescape"),
            )

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if status == 101:
            raise ConnectionError("upstream switched protocols unasked")
        if status < 200:
            # An interim response: llhttp completes it without a body and the final one follows.
            return
        headers, self._headers = self._headers, None
        assert headers is not None
        no_body = self._head_request or status in (204, 304)
        length: int | None = None
        raw_length = headers.get("Content-Length")
        if raw_length is not None and not no_body:
            # llhttp has already refused anything but digits, and disagreeing duplicates.
            length = int(raw_length)
        codings = ",".join(headers.getall("Transfer-Encoding", ()))
        chunked = codings.rpartition(",")[2].strip().lower() == "chunked"
        self._until_close = not no_body and length is None and not chunked
        response = UpstreamResponse(
            self,
            status,
            self._reason,
            CIMultiDictProxy(headers),
            length,
            parser.should_keep_alive(),
        )
        self._response = response
        if self._head_request:
            # llhttp cannot be told that a HEAD response has no body (httptools does not pass
            # on_headers_complete's "skip body" answer through), so the response ends here and
            # the next exchange gets a fresh parser. Bytes this one still sees are a protocol
            # error (see on_body and on_message_begin).
            response._finish()
            self._busy = False
            self._parser = httptools.HttpResponseParser(self)
        waiter, self._head_waiter = self._head_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def on_body(self, body: bytes) -> None:
        response = self._response
        if response is None or response._eof:
            raise ConnectionError("upstream sent a body where none can be")
        response._feed(body)
        if response._size > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        response = self._response
        if response is None:
            return  # the end of an interim response
        if not response._eof:
            response._finish()
        self._busy = False


class _Pool:
    """Idle connections to one origin."""

    def __init__(self, origin: str, context: ssl.SSLContext | None) -> None:
        parts = urlsplit(origin)
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if context is not None else 80)
        self.authority = parts.netloc.rpartition("@")[2]
        self.context = context
        self.idle: list[_Connection] = []
        self.all: set[_Connection] = set()

    def get(self) -> _Connection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    def put(self, conn: _Connection) -> None:
        if len(self.idle) < _MAX_IDLE:
            self.idle.append(conn)
        else:
            conn.close()

    def forget(self, conn: _Connection) -> None:
        self.all.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)


class Upstream:
    """Keep-alive connections to the proxy's upstream origins, one pool per origin and TLS
    context; ``async with Upstream(connect_timeout=...) as client`` closes them all on exit."""

    def __init__(self, *, connect_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        self._pools: dict[tuple[str, ssl.SSLContext | None], _Pool] = {}
        self._default_context: ssl.SSLContext | None = None
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def request(
        self,
        method: str,
        origin: str,
        target: str,
        head: str,
        body: bytes,
        tls: ssl.SSLContext | None = None,
    ) -> UpstreamResponse:
        """Send ``method target`` to ``origin`` (``http(s)://host[:port]``).

        ``head`` holds the header lines (each ending in CRLF) other than ``Host`` and
        ``Content-Length``, which are set here. ``tls`` verifies an https origin (default: the
        system's trust store). The caller must :meth:`UpstreamResponse.close` the response.
        """
        if self._closed:
            raise ConnectionError("the upstream client is closed")
        key = (origin, tls)
        pool = self._pools.get(key)
        if pool is None:
            context: ssl.SSLContext | None = None
            if origin.startswith("https:"):
                if tls is None:
                    if self._default_context is None:
                        self._default_context = ssl.create_default_context()
                    tls = self._default_context
                context = tls
            pool = self._pools[key] = _Pool(origin, context)
        length = (
            f"Content-Length: {len(body)}\r\n" if body or method in ("POST", "PUT", "PATCH") else ""
        )
        data = (
            f"{method} {target} HTTP/1.1\r\nHost: {pool.authority}\r\n{head}{length}\r\n"
        ).encode("utf-8", "surrogateescape") + body
        head_request = method == "HEAD"
        conn = pool.get()
        if conn is not None:
            try:
                return await _exchange(conn, data, head_request)
            except ConnectionError:
                # A server may close an idle keep-alive connection just as it is reused.
                if conn.received_anything or method not in _IDEMPOTENT:
                    raise
        conn = await self._connect(pool)
        return await _exchange(conn, data, head_request)

    async def _connect(self, pool: _Pool) -> _Connection:
        loop = asyncio.get_running_loop()
        context = pool.context
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(pool),
                    pool.host,
                    pool.port,
                    ssl=context,
                    server_hostname=pool.host if context is not None else None,
                )
        except TimeoutError:
            raise ConnectionError(f"connecting to {pool.authority} timed out") from None
        pool.all.add(conn)
        return conn

    async def close(self) -> None:
        """Close every connection, idle or in use."""
        self._closed = True
        for pool in self._pools.values():
            for conn in list(pool.all):
                conn.close()
            pool.idle.clear()
        self._pools.clear()


async def _exchange(conn: _Connection, data: bytes, head_request: bool) -> UpstreamResponse:
    try:
        return await conn.send(data, head_request)
    except BaseException:
        # Cancelled (the client went away) or failed before the head arrived: closing the
        # connection is what tells the upstream to stop working on the request.
        conn.close()
        raise
