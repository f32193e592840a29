"""The proxy's listening side as a hostile local client sees it: half-sent heads, idle and slow
connections, floods, malformed requests. Loopback only; every loop and wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from conftest import Upstream

from freshtoken.proxy import Limits, Proxy, StaticTokenSource
from freshtoken.proxy._server import AcceptErrorGuard

CALL = b'{"jsonrpc":"2.0","id":1,"method":"tools/call"}'


def _request(path: str, body: bytes = CALL) -> bytes:
    return (
        b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body)
    )


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status, _, body = await _full_response(reader)
    return status, body


async def _full_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get(b"content-length", b"0"))
    return int(head.split(b" ", 2)[1]), headers, await reader.readexactly(length)


async def _closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """Whether the proxy closes this connection (within a generous bound)."""
    with contextlib.suppress(ConnectionError):
        async with asyncio.timeout(10):
            while await reader.read(4096):
                pass
    return reader.at_eof() or reader.exception() is not None


@contextlib.asynccontextmanager
async def _connection(
    port: int,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _path(proxy: Proxy, url: str) -> str:
    return url.removeprefix(proxy.base_url)


class Held:
    """Upstream requests wait for :attr:`release`; :meth:`arrived` waits for the next one."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self._arrivals: asyncio.Queue[None] = asyncio.Queue()

    async def handler(self, request: web.Request) -> web.StreamResponse:
        self._arrivals.put_nowait(None)
        await self.release.wait()
        return web.json_response({"jsonrpc": "2.0", "id": 1, "result": {}})

    async def arrived(self, count: int = 1) -> None:
        for _ in range(count):
            await asyncio.wait_for(self._arrivals.get(), 5)


@pytest.fixture
def held(upstream: Upstream) -> Held:
    state = Held()
    upstream.handler = state.handler
    return state


# -- deadlines ---------------------------------------------------------------------------


async def test_a_half_sent_head_is_closed_but_a_request_being_served_is_not(
    upstream: Upstream, held: Held
) -> None:
    async with Proxy(limits=Limits(header_timeout=0.2)) as proxy:
        path = _path(proxy, proxy.register("up", upstream.url + "/mcp", StaticTokenSource("t")))
        async with _connection(proxy.port) as (served_r, served_w):
            served_w.write(_request(path))
            await held.arrived()
            # A head that never completes, started after the served one's head was complete:
            # once it is closed, the served request has outlived its own header deadline.
            async with _connection(proxy.port) as (slow_r, slow_w):
                slow_w.write(b"POST /half-a-request-li")
                assert await _closed_by_peer(slow_r)
            held.release.set()
            status, body = await asyncio.wait_for(_response(served_r), 5)
    assert status == 200
    assert b'"result"' in body


async def test_an_idle_keepalive_connection_is_closed_after_the_keepalive_timeout(
    upstream: Upstream,
) -> None:
    async with Proxy(limits=Limits(keepalive_timeout=0.2)) as proxy:
        path = _path(proxy, proxy.register("up", upstream.url + "/mcp", StaticTokenSource("t")))
        async with _connection(proxy.port) as (reader, writer):
            writer.write(_request(path))
            assert (await asyncio.wait_for(_response(reader), 5))[0] == 200
            assert await _closed_by_peer(reader)


async def test_a_kept_alive_connection_is_not_held_to_the_header_deadline(
    upstream: Upstream,
) -> None:
    async with Proxy(limits=Limits(header_timeout=0.2)) as proxy:
        path = _path(proxy, proxy.register("up", upstream.url + "/mcp", StaticTokenSource("t")))
        async with _connection(proxy.port) as (reader, writer):
            writer.write(_request(path))
            assert (await asyncio.wait_for(_response(reader), 5))[0] == 200
            async with _connection(proxy.port) as (slow_r, slow_w):
                slow_w.write(b"POST /half")
                assert await _closed_by_peer(slow_r)
            # Idle for longer than the header deadline, yet still open for the next request.
            writer.write(_request(path))
            assert (await asyncio.wait_for(_response(reader), 5))[0] == 200


async def test_a_request_body_that_stops_arriving_is_a_408(upstream: Upstream) -> None:
    async with Proxy(limits=Limits(body_timeout=0.2)) as proxy:
        path = _path(proxy, proxy.register("up", upstream.url + "/mcp", StaticTokenSource("t")))
        async with _connection(proxy.port) as (reader, writer):
            writer.write(_request(path)[:-10])
            status, headers, body = await asyncio.wait_for(_full_response(reader), 5)
    assert status == 408
    assert b"request body timed out" in body
    assert headers[b"connection"] == b"close"
    assert upstream.seen == []


# -- the connection cap ----------------------------------------------------------------------


async def test_at_the_cap_the_oldest_half_sent_connection_makes_room(upstream: Upstream) -> None:
    async with Proxy(limits=Limits(max_connections=4)) as proxy:
        path = _path(proxy, proxy.register("up", upstream.url + "/mcp", StaticTokenSource("t")))
        async with contextlib.AsyncExitStack() as stack:
            floods = [await stack.enter_async_context(_connection(proxy.port)) for _ in range(4)]
            for _, writer in floods:
                writer.write(b"GET /half-a-req")
                await writer.drain()
            async with _connection(proxy.port) as (reader, writer):
                writer.write(_request(path))
                assert (await asyncio.wait_for(_response(reader), 5))[0] == 200
                assert await _closed_by_peer(floods[0][0])
                assert proxy.open_connections == 4
            assert not floods[1][0].at_eof()


async def test_connections_serving_requests_are_never_cut_to_make_room(
    upstream: Upstream, held: Held
) -> None:
    async with Proxy(limits=Limits(max_connections=2)) as proxy:
        path = _path(proxy, proxy.register("up", upstream.url + "/mcp", StaticTokenSource("t")))
        async with _connection(proxy.port) as one, _connection(proxy.port) as two:
            for _, writer in (one, two):
                writer.write(_request(path))
            await held.arrived(2)
            async with _connection(proxy.port) as (late_r, late_w):
                late_w.write(_request(path))
                assert await _closed_by_peer(late_r)
            held.release.set()
            for reader, _ in (one, two):
                assert (await asyncio.wait_for(_response(reader), 5))[0] == 200
    assert len(upstream.seen) == 2


async def test_a_flood_of_half_sent_requests_under_a_low_fd_limit_does_not_lock_clients_out(
    tmp_path: Path, upstream_process: str
) -> None:
    # This process holds the flood: it needs more descriptors than the proxy is given.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip("needs an open-file limit of at least 4096")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), hard))
    log_path = tmp_path / "proxy.log"
    child = Path(__file__).with_name("proxy_flood_child.py")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(child),
        "1024",
        upstream_process,
        str(log_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    flood: list[asyncio.StreamWriter] = []
    waits: list[float] = []
    try:
        url = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        port = int(url.split(":")[2].split("/")[0])
        for _ in range(1100):
            with contextlib.suppress(ConnectionError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /half-a-request-li")
                flood.append(writer)
        async with aiohttp.ClientSession() as http:
            for _ in range(5):
                started = time.monotonic()
                async with asyncio.timeout(10), http.post(url, data=CALL) as resp:
                    assert resp.status == 200
                    await resp.read()
                waits.append(time.monotonic() - started)
    finally:
        for writer in flood:
            writer.close()
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), 30)
    print(f"legitimate requests served in {max(waits):.3f} s at most")
    lines = (await asyncio.to_thread(log_path.read_text)).splitlines()
    assert len(lines) < 100, lines[:20]
    assert not any("Traceback" in line for line in lines)


@pytest.fixture
def upstream_process(tmp_path: Path) -> Iterator[str]:
    """A tiny JSON upstream in its own process (the flood test runs its own event loop)."""
    script = tmp_path / "upstream.py"
    script.write_text(
        "import sys\n"
        "from aiohttp import web\n"
        "async def ok(request):\n"
        "    return web.json_response({'jsonrpc': '2.0', 'id': 1, 'result': {}})\n"
        "app = web.Application()\n"
        "app.router.add_post('/mcp', ok)\n"
        "def ready(_):\n"
        "    print('ready', flush=True)\n"
        "web.run_app(app, host='127.0.0.1', port=int(sys.argv[1]), print=ready,\n"
        "            handle_signals=True)\n"
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with subprocess.Popen(
        [sys.executable, str(script), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith(b"ready")
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            proc.terminate()
            proc.wait(timeout=30)


# -- accept errors, malformed requests, guards ---------------------------------------------------


async def test_repeated_accept_errors_are_logged_a_bounded_number_of_times(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    async with Proxy() as proxy:
        listening = _Listening(("127.0.0.1", proxy.port))
        with caplog.at_level(logging.DEBUG):
            for _ in range(1000):
                loop.call_exception_handler(
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": OSError(24, "Too many open files"),
                        "socket": listening,
                    }
                )
    lines = [r for r in caplog.records if "accept" in r.getMessage()]
    assert 1 <= len(lines) <= 11
    assert all(r.exc_info is None for r in lines)
    assert loop.get_exception_handler() is None  # handed back on stop


class _Listening:
    """What asyncio hands the exception handler: the listening socket (its address is read)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self._address = address

    def getsockname(self) -> tuple[str, int]:
        return self._address


def test_the_accept_guard_passes_other_reports_on() -> None:
    seen: list[str] = []
    loop = asyncio.new_event_loop()
    try:
        loop.set_exception_handler(lambda _, context: seen.append(context["message"]))
        guard = AcceptErrorGuard(loop, ("127.0.0.1", 1))
        loop.call_exception_handler({"message": "something else"})
        guard.close()
        loop.call_exception_handler({"message": "after"})
    finally:
        loop.close()
    assert seen == ["something else", "after"]


async def test_a_malformed_request_is_one_log_line_without_the_path_or_a_traceback(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    async with Proxy() as proxy:
        proxy.register("up", upstream.url + "/mcp", StaticTokenSource("t"))
        with caplog.at_level(logging.DEBUG, logger="freshtoken"):
            async with _connection(proxy.port) as (reader, writer):
                writer.write(b"GET /%s/up/mcp HT\x00TP/1.1\r\n\r\n" % proxy.secret.encode())
                status, _ = await asyncio.wait_for(_response(reader), 5)
    assert status == 400
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].exc_info is None
    for record in caplog.records:
        text = record.getMessage() + (str(record.exc_info[1]) if record.exc_info else "")
        assert proxy.secret not in text
        assert record.exc_info is None or record.levelno == logging.DEBUG


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Host", "[::1"),
        ("Host", "127.0.0.1:port"),
        ("Host", "[::1]x"),
        ("Origin", "http://[::1"),
        ("Origin", "http://127.0.0.1:notaport"),
        ("Origin", "http://evil.example"),
    ],
)
async def test_a_malformed_or_foreign_host_or_origin_is_403(
    proxy: Proxy, upstream: Upstream, header: str, value: str
) -> None:
    url = proxy.register("up", upstream.url + "/mcp", StaticTokenSource("t"))
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=CALL, headers={header: value}) as resp,
    ):
        assert resp.status == 403
        assert (await resp.json())["error"]["message"].endswith("not allowed") or header == "Host"
    assert upstream.seen == []


@pytest.mark.parametrize(
    "tail",
    [
        "/mcp/../../other",
        "/mcp/%2e%2e/%2E%2E/other",
        "/mcp/..%2fother",
        "/mcp/.%2E/x",
        "/mcp/./x",
        "/other",
        "/mcpx",
        "/",
    ],
)
async def test_paths_outside_the_target_get_no_bearer(
    proxy: Proxy, upstream: Upstream, tail: str
) -> None:
    proxy.register("up", upstream.url + "/mcp", StaticTokenSource("t"))
    async with _connection(proxy.port) as (reader, writer):
        writer.write(_request(f"/{proxy.secret}/up{tail}"))
        status, body = await asyncio.wait_for(_response(reader), 5)
    assert status == 403
    assert b"outside the target" in body
    assert upstream.seen == []


async def test_paths_under_the_target_pass(proxy: Proxy, upstream: Upstream) -> None:
    proxy.register("up", upstream.url + "/mcp", StaticTokenSource("t"))
    for tail in ("/mcp", "/mcp/", "/mcp/sub/x.json", "/mcp?session=1", "/mcp/a..b"):
        async with _connection(proxy.port) as (reader, writer):
            writer.write(_request(f"/{proxy.secret}/up{tail}"))
            assert (await asyncio.wait_for(_response(reader), 5))[0] == 200
    assert [s.path_qs for s in upstream.seen] == [
        "/mcp",
        "/mcp/",
        "/mcp/sub/x.json",
        "/mcp?session=1",
        "/mcp/a..b",
    ]
