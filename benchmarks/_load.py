"""Benchmark process: the load generator.

A minimal HTTP/1.1 keep-alive client on raw asyncio protocols: requests are pre-encoded bytes and
responses are framed by llhttp (``httptools``, as in the proxy's upstream hop), with no JSON
parsing and no per-request allocation beyond the body and its few headers. That keeps the generator several times
cheaper per request than the servers it drives, so it is not the bottleneck it measures (the run
reports its CPU use next to theirs).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools
from _worker import command_loop

PROTOCOL_VERSION = "2025-11-25"

BodySink = Callable[[bytes, float], None]


class Response:
    """Status, headers (lower-case names) and body of one response."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        value = self.headers.get(name.lower().encode())
        return None if value is None else value.decode("latin-1")


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time.

    A response completes either a future (:meth:`request`) or, on the hot path, a plain
    callback (:meth:`send`) that may send the next request at once, without a trip through
    the event loop's task machinery.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._now = 0.0
        self._sink: BodySink | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self._callback: Callable[[Response], None] | None = None
        self.first_body: asyncio.Future[float] | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        error = ConnectionError("connection closed")
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        if self.first_body is not None and not self.first_body.done():
            self.first_body.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)

    def request(self, data: bytes, sink: BodySink | None = None) -> asyncio.Future[Response]:
        """Send ``data`` (a whole request); the future resolves with the whole response.

        With ``sink``, body bytes go to ``sink(piece, arrival_time)`` as they arrive instead.
        """
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        self._callback = None
        self._sink = sink
        assert self.transport is not None
        self.transport.write(data)
        return waiter

    def send(self, data: bytes, callback: Callable[[Response], None]) -> None:
        """Send ``data``; call ``callback(response)`` from the protocol when it is complete."""
        self._callback = callback
        self._sink = None
        assert self.transport is not None
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self._now = time.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.transport is not None:
                self.transport.close()
            raise ConnectionError(f"malformed response: {exc}") from None

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._headers = {}
        self._body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self._deliver(body, self._now)

    def on_message_complete(self) -> None:
        self._finish()

    def _deliver(self, piece: bytes, now: float) -> None:
        if self.first_body is not None and not self.first_body.done():
            self.first_body.set_result(now)
        if self._sink is not None:
            self._sink(piece, now)
        else:
            self._body.append(piece)

    def _finish(self) -> None:
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        response = Response(self._parser.get_status_code(), self._headers, body)
        callback = self._callback
        if callback is not None:
            callback(response)
            return
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)


@dataclass(slots=True)
class Target:
    """Where and how to send MCP requests: the pre-encoded head of every POST."""

    host: str
    port: int
    path: str
    extra: str

    def post(self, body: bytes) -> bytes:
        return (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n"
            f"MCP-Protocol-Version: {PROTOCOL_VERSION}\r\n{self.extra}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    def get_stream(self) -> bytes:
        return (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Accept: text/event-stream\r\nMCP-Protocol-Version: {PROTOCOL_VERSION}\r\n"
            f"{self.extra}\r\n"
        ).encode()

    async def connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(Connection, self.host, self.port)
        return connection


def _rpc(method: str, params: dict[str, Any], rpc_id: int | None = 1) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if rpc_id is not None:
        message["id"] = rpc_id
    return json.dumps(message, separators=(",", ":")).encode()


ECHO = _rpc("tools/call", {"name": "echo", "arguments": {"text": "hello"}})


def stream_call(count: int, pace: float) -> bytes:
    return _rpc(
        "tools/call",
        {
            "name": "stream",
            "arguments": {"count": count, "pace": pace},
            "_meta": {"freshtoken/responseMode": "sse", "progressToken": "bench"},
        },
    )


def answered(response: Response) -> bool:
    """A tool result came back (not an HTTP or JSON-RPC error, not a tool error)."""
    body = response.body
    return response.status == 200 and b'"result"' in body and b'"isError":true' not in body


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile of ``samples`` (``q`` in 0..100); NaN when empty."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class SseCounter:
    """Counts progress events of an SSE body and notes when each event id arrived."""

    def __init__(self, arrivals: dict[str, float] | None = None) -> None:
        self._pending = b""
        self.events = 0
        self.arrivals = arrivals

    def __call__(self, piece: bytes, now: float) -> None:
        data = self._pending + piece
        blocks = data.split(b"\n\n")
        self._pending = blocks.pop()
        for block in blocks:
            if b"notifications/progress" not in block:
                continue
            self.events += 1
            if self.arrivals is not None and block.startswith(b"id: "):
                self.arrivals[block[4 : block.index(b"\n")].decode()] = now


class LoadGenerator:
    def __init__(self) -> None:
        self.targets: dict[str, Target] = {}
        self.held: list[Connection] = []

    async def connect(self, name: str, url: str, bearer: str | None = None) -> str:
        """Initialize a session at ``url`` (with ``bearer`` if given) and remember it as ``name``."""
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        extra = f"Authorization: Bearer {bearer}\r\n" if bearer else ""
        target = Target(parts.hostname, parts.port, parts.path, extra)
        connection = await target.connect()
        try:
            init = _rpc(
                "initialize",
                {
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "freshtoken-bench", "version": "0"},
                },
                rpc_id=0,
            )
            response = await connection.request(target.post(init))
            session = response.header("mcp-session-id")
            if response.status != 200 or session is None:
                raise RuntimeError(f"initialize at {name} answered HTTP {response.status}")
            target.extra += f"Mcp-Session-Id: {session}\r\n"
            done = await connection.request(
                target.post(_rpc("notifications/initialized", {}, rpc_id=None))
            )
            if done.status != 202:
                raise RuntimeError(f"notifications/initialized answered HTTP {done.status}")
            check = await connection.request(target.post(ECHO))
            if not answered(check):
                raise RuntimeError(f"tools/call echo at {name} answered HTTP {check.status}")
        finally:
            assert connection.transport is not None
            connection.transport.close()
        self.targets[name] = target
        return session

    async def connect_plain(self, name: str, url: str, bearer: str | None = None) -> None:
        """Remember ``url`` as ``name`` without an MCP session (for the light upstream)."""
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        extra = f"Authorization: Bearer {bearer}\r\n" if bearer else ""
        target = Target(parts.hostname, parts.port, parts.path, extra)
        connection = await target.connect()
        try:
            check = await connection.request(target.post(ECHO))
            if not answered(check):
                raise RuntimeError(f"tools/call echo at {name} answered HTTP {check.status}")
        finally:
            _close([connection])
        self.targets[name] = target

    async def soak(
        self,
        target: str,
        clients: int,
        calls: int,
        rotate_every: int,
        rotate_url: str,
        timeout: float,
    ) -> dict[str, Any]:
        """``clients`` connections making ``calls`` sequential ``echo`` calls each, while the
        authorization server invalidates every access token after each ``rotate_every``
        answered calls (a POST to ``rotate_url``, not awaited by the calls)."""
        spec = self.targets[target]
        request = spec.post(ECHO)
        control_at = urlsplit(rotate_url)
        assert control_at.hostname is not None
        assert control_at.port is not None
        rotate_request = (
            f"POST {control_at.path} HTTP/1.1\r\nHost: {control_at.hostname}:{control_at.port}"
            "\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        semaphore = asyncio.Semaphore(100)

        async def open_one() -> Connection:
            async with semaphore:
                return await spec.connect()

        conns = await asyncio.gather(*(open_one() for _ in range(clients)))
        control = await Target(control_at.hostname, control_at.port, control_at.path, "").connect()
        done = failed = rotations = 0
        statuses: dict[str, int] = {}
        due: asyncio.Queue[None] = asyncio.Queue()

        async def rotate() -> None:
            nonlocal rotations
            while True:
                await due.get()
                response = await control.request(rotate_request)
                if response.status >= 300:
                    raise RuntimeError(f"rotation answered HTTP {response.status}")
                rotations += 1
                due.task_done()

        async def client(connection: Connection) -> None:
            nonlocal done, failed
            for _ in range(calls):
                try:
                    response = await connection.request(request)
                except ConnectionError:
                    failed += 1
                    statuses["error"] = statuses.get("error", 0) + 1
                    return
                key = str(response.status)
                if not answered(response):
                    failed += 1
                    key += " (failed)"
                statuses[key] = statuses.get(key, 0) + 1
                done += 1
                if done % rotate_every == 0:
                    due.put_nowait(None)

        rotator = asyncio.ensure_future(rotate())
        try:
            start = time.perf_counter()
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(client(c) for c in conns))
                await due.join()
            elapsed = time.perf_counter() - start
        finally:
            rotator.cancel()
            _close([*conns, control])
        return {
            "calls": clients * calls,
            "failed": failed,
            "rotations": rotations,
            "statuses": statuses,
            "elapsed": elapsed,
        }

    async def json_load(
        self, target: str, connections: int, duration: float, warmup: float
    ) -> dict[str, Any]:
        """Closed-loop ``echo`` calls on ``connections`` keep-alive connections."""
        spec = self.targets[target]
        request = spec.post(ECHO)
        conns = [await spec.connect() for _ in range(connections)]
        loop = asyncio.get_running_loop()
        clock = time.perf_counter
        latencies: list[float] = []
        errors = total = 0
        recording = False
        until = 0.0
        running = 0
        done: asyncio.Future[None] = loop.create_future()

        def drive(connection: Connection) -> None:
            sent = clock()

            def on_response(response: Response) -> None:
                nonlocal sent, errors, running, total
                now = clock()
                total += 1
                if recording:
                    latencies.append(now - sent)
                    if not answered(response):
                        errors += 1
                if now < until:
                    sent = now
                    connection.send(request, on_response)
                    return
                running -= 1
                if running == 0 and not done.done():
                    done.set_result(None)

            connection.send(request, on_response)

        async def phase(seconds: float) -> None:
            nonlocal until, running, done
            until = clock() + seconds
            running = len(conns)
            done = loop.create_future()
            lost = [c.closed for c in conns]
            for connection in conns:
                drive(connection)
            finished, _ = await asyncio.wait([done, *lost], return_when=asyncio.FIRST_COMPLETED)
            if done not in finished:
                raise ConnectionError("a connection closed during the load")

        try:
            if warmup > 0:
                await phase(warmup)
            recording = True
            cpu, start = _cpu(), clock()
            await phase(duration)
            elapsed, cpu = clock() - start, _cpu() - cpu
        finally:
            _close(conns)
        return {
            "requests": len(latencies),
            "total": total,
            "errors": errors,
            "elapsed": elapsed,
            "rps": len(latencies) / elapsed,
            "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
            "cpu": cpu / elapsed,
        }

    async def sse_load(
        self, target: str, connections: int, duration: float, warmup: float, count: int
    ) -> dict[str, Any]:
        """Closed-loop ``stream`` calls (``count`` events each, no pacing) over SSE."""
        spec = self.targets[target]
        request = spec.post(stream_call(count, 0.0))
        conns = [await spec.connect() for _ in range(connections)]
        events = streams = errors = total = 0
        recording = False

        async def drive(connection: Connection, until: float) -> None:
            nonlocal events, streams, errors, total
            while time.perf_counter() < until:
                counter = SseCounter()
                response = await connection.request(request, counter)
                total += counter.events
                if recording:
                    events += counter.events
                    streams += 1
                    if response.status != 200 or counter.events != count:
                        errors += 1

        try:
            start = time.perf_counter()
            await asyncio.gather(*(drive(c, start + warmup) for c in conns))
            recording = True
            cpu, start = _cpu(), time.perf_counter()
            await asyncio.gather(*(drive(c, start + duration) for c in conns))
            elapsed, cpu = time.perf_counter() - start, _cpu() - cpu
        finally:
            _close(conns)
        return {
            "events": events,
            "total": total,
            "streams": streams,
            "errors": errors,
            "elapsed": elapsed,
            "events_per_s": events / elapsed,
            "cpu": cpu / elapsed,
        }

    async def sse_arrivals(
        self, target: str, streams: int, count: int, pace: float
    ) -> dict[str, Any]:
        """Run ``streams`` paced ``stream`` calls one after another; note each event's arrival."""
        spec = self.targets[target]
        request = spec.post(stream_call(count, pace))
        connection = await spec.connect()
        arrivals: dict[str, float] = {}
        errors = 0
        try:
            for _ in range(streams):
                counter = SseCounter(arrivals)
                response = await connection.request(request, counter)
                if response.status != 200 or counter.events != count:
                    errors += 1
        finally:
            _close([connection])
        return {"arrivals": arrivals, "errors": errors}

    async def open_streams(self, target: str, n: int, timeout: float) -> dict[str, Any]:
        """Open ``n`` GET SSE streams and hold them until :meth:`close_streams`."""
        spec = self.targets[target]
        request = spec.get_stream()
        start = time.perf_counter()
        semaphore = asyncio.Semaphore(100)

        async def one() -> Connection:
            async with semaphore:
                connection = await spec.connect()
                loop = asyncio.get_running_loop()
                connection.first_body = loop.create_future()
                self.held.append(connection)
                connection.request(request, _discard)
                await connection.first_body
                return connection

        async with asyncio.timeout(timeout):
            opened = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
        ok = sum(1 for c in opened if isinstance(c, Connection))
        return {"opened": ok, "elapsed": time.perf_counter() - start}

    async def close_streams(self) -> int:
        held, self.held = self.held, []
        _close(held)
        await asyncio.gather(*(c.closed for c in held))
        return len(held)

    async def burst(self, target: str, n: int, timeout: float) -> dict[str, Any]:
        """``n`` concurrent ``echo`` calls on ``n`` pre-opened connections, sent at once."""
        spec = self.targets[target]
        request = spec.post(ECHO)
        conns = [await spec.connect() for _ in range(n)]
        try:
            start = time.perf_counter()
            async with asyncio.timeout(timeout):
                responses = await asyncio.gather(
                    *(c.request(request) for c in conns), return_exceptions=True
                )
            elapsed = time.perf_counter() - start
        finally:
            _close(conns)
        statuses: dict[str, int] = {}
        for response in responses:
            key = str(response.status) if isinstance(response, Response) else "error"
            statuses[key] = statuses.get(key, 0) + 1
        ok = sum(1 for r in responses if isinstance(r, Response) and answered(r))
        return {"n": n, "answered": ok, "statuses": statuses, "elapsed": elapsed}


def _discard(piece: bytes, now: float) -> None:
    """GET streams are held open, not read."""


def _close(connections: list[Connection]) -> None:
    for connection in connections:
        if connection.transport is not None:
            connection.transport.close()


async def main() -> None:
    generator = LoadGenerator()
    await command_loop(
        {"pid": os.getpid()},
        {
            "connect": generator.connect,
            "connect_plain": generator.connect_plain,
            "soak": generator.soak,
            "json_load": generator.json_load,
            "sse_load": generator.sse_load,
            "sse_arrivals": generator.sse_arrivals,
            "open_streams": generator.open_streams,
            "close_streams": generator.close_streams,
            "burst": generator.burst,
        },
    )


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main())
