"""The upstream hop against scripted hostile upstreams on loopback: hangs, drips, cuts, stale
keep-alive connections, garbage. Every wait is bounded by a lowered limit or a test bound."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import Upstream
from proxy_raw_server import raw_server, reply

from freshtoken import Timeline
from freshtoken.proxy import CallableTokenSource, Limits, Proxy, StaticTokenSource
from freshtoken.proxy._client import env_proxy, keepalive_socket

CALL = {"jsonrpc": "2.0", "id": 7, "method": "tools/call"}
OK = b'{"jsonrpc":"2.0","id":7,"result":{}}'
JSON = b"Content-Type: application/json\r\n"


async def _post(url: str, payload: Any = CALL) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(url, json=payload) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.read()
        return resp.status, body


async def _read_until_cut(resp: aiohttp.ClientResponse, into: list[bytes]) -> None:
    async with asyncio.timeout(5):
        while chunk := await resp.content.readany():
            into.append(chunk)


def _error(body: Any) -> str:
    assert body["id"] == 7
    assert body["error"]["data"] == {"target": "up"}
    message: str = body["error"]["message"]
    assert message.startswith("target up: upstream request ")
    return message


# -- the stale keep-alive race ----------------------------------------------------------------


async def test_a_post_lost_to_a_stale_keepalive_connection_is_sent_again_on_a_new_one() -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        if n == 1:
            writer.write(reply(OK, JSON))
            await writer.drain()
        else:
            # The server's idle timer closed the connection just as the next request arrived.
            writer.close()

    async with raw_server(script) as raw, Proxy() as proxy:
        url = proxy.register("up", raw.origin + "/mcp", StaticTokenSource("t"))
        assert await _post(url) == (200, {"jsonrpc": "2.0", "id": 7, "result": {}})
        assert await _post(url) == (200, {"jsonrpc": "2.0", "id": 7, "result": {}})
    assert raw.connections == 2
    assert [r.split(b" ", 1)[0] for r in raw.requests] == [b"POST", b"POST", b"POST"]


async def test_a_post_dropped_on_a_new_connection_is_not_sent_again() -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        writer.close()  # the request may have been processed: it must not run twice

    async with raw_server(script) as raw, Proxy() as proxy:
        url = proxy.register("up", raw.origin + "/mcp", StaticTokenSource("t"))
        status, body = await _post(url)
    assert status == 502
    assert "closed the connection without a response" in _error(body)
    assert len(raw.requests) == 1


# -- connect and response timeouts --------------------------------------------------------------


@asynccontextmanager
async def _unresponsive_listener() -> AsyncIterator[int]:
    """A port whose accept queue is full: a new connection never completes (the kernel drops
    its SYN), as for an upstream behind a black hole."""
    listener = socket.socket()
    filler = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        yield listener.getsockname()[1]
    finally:
        filler.close()
        listener.close()


async def test_a_connect_that_hangs_is_a_504_naming_the_target() -> None:
    limits = Limits(connect_timeout=0.2)
    async with _unresponsive_listener() as port, Proxy(limits=limits) as proxy:
        url = proxy.register("up", f"http://127.0.0.1:{port}/mcp", StaticTokenSource("t"))
        status, body = await asyncio.wait_for(_post(url), 10)
    assert status == 504
    assert "connecting timed out after 0.2 s" in _error(body)


async def test_a_tls_handshake_that_hangs_is_a_504() -> None:
    accepted = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()  # never says a word of TLS
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Proxy(limits=Limits(connect_timeout=0.2)) as proxy:
            url = proxy.register(
                "up",
                f"https://127.0.0.1:{port}/mcp",
                StaticTokenSource("t"),
                ssl_context=ssl.create_default_context(),
            )
            status, body = await asyncio.wait_for(_post(url), 10)
    finally:
        server.close()
        await server.wait_closed()
    assert accepted.is_set()
    assert status == 504
    assert "connecting timed out" in _error(body)


async def test_an_upstream_that_never_answers_is_a_504_and_its_connection_is_closed() -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        await reader.read()  # returns once the proxy gives up and closes the connection

    async with (
        raw_server(script) as raw,
        Proxy(limits=Limits(response_timeout=0.2)) as proxy,
    ):
        url = proxy.register("up", raw.origin + "/mcp", StaticTokenSource("t"))
        status, body = await asyncio.wait_for(_post(url), 10)
        await asyncio.wait_for(raw.disconnected.wait(), 5)
    assert status == 504
    assert "no response within 0.2 s" in _error(body)


# -- body reads: timeouts, cuts --------------------------------------------------------------


def _head(length: int | None = None, ctype: bytes = b"application/json") -> bytes:
    framing = (
        b"Content-Length: %d" % length if length is not None else b"Transfer-Encoding: chunked"
    )
    return b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\n%s\r\n\r\n" % (ctype, framing)


async def test_a_json_body_that_stops_dripping_is_a_504_before_anything_reaches_the_client() -> (
    None
):
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        writer.write(_head(100) + b'{"jsonrpc":')
        await writer.drain()
        await reader.read()

    async with raw_server(script) as raw, Proxy(limits=Limits(read_timeout=0.2)) as proxy:
        url = proxy.register("up", raw.origin + "/mcp", StaticTokenSource("t"))
        status, body = await asyncio.wait_for(_post(url), 10)
    assert status == 504
    assert "no body bytes for 0.2 s" in _error(body)


@pytest.mark.parametrize("how", ["stalls", "is cut"])
async def test_a_streamed_body_that_stalls_or_is_cut_never_ends_cleanly(how: str) -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        writer.write(_head(1000) + b"x" * 100)
        await writer.drain()
        if how == "is cut":
            writer.close()
        else:
            await reader.read()

    # Bodies over json_peek_bytes are streamed: the 200 head is out before the body breaks.
    limits = Limits(read_timeout=0.2, json_peek_bytes=16)
    received: list[bytes] = []
    async with raw_server(script) as raw, Proxy(limits=limits) as proxy:
        url = proxy.register("up", raw.origin + "/mcp", StaticTokenSource("t"))
        async with aiohttp.ClientSession() as http, http.post(url, json=CALL) as resp:
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await _read_until_cut(resp, received)
    assert b"".join(received) == b"x" * 100


async def test_a_chunked_body_cut_after_the_response_started_is_a_cut_for_the_client() -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        writer.write(_head(None) + b"40\r\n" + b"y" * 64 + b"\r\n")
        await writer.drain()
        writer.close()  # no last chunk

    received: list[bytes] = []
    limits = Limits(json_peek_bytes=16)
    async with raw_server(script) as raw, Proxy(limits=limits) as proxy:
        url = proxy.register("up", raw.origin + "/mcp", StaticTokenSource("t"))
        async with aiohttp.ClientSession() as http, http.post(url, json=CALL) as resp:
            with pytest.raises(aiohttp.ClientPayloadError):
                await _read_until_cut(resp, received)
    assert b"".join(received) == b"y" * 64


@pytest.mark.parametrize(
    ("response", "what"),
    [
        (_head(100) + b'{"jsonrpc":', "response body cut short"),
        (_head(None) + b'5\r\n{"jso', "response body cut short"),
        (_head(None, b"text/event-stream") + b"10\r\n: priming\n\nid: 1\r\n", "event stream cut"),
    ],
    ids=["fixed", "chunked", "sse"],
)
async def test_a_body_cut_while_the_proxy_peeks_is_a_json_rpc_502(
    response: bytes, what: str
) -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        writer.write(response)
        await writer.drain()
        writer.close()

    async with raw_server(script) as raw, Proxy() as proxy:
        url = proxy.register("up", raw.origin + "/mcp", StaticTokenSource("t"))
        status, body = await asyncio.wait_for(_post(url), 10)
    assert status == 502
    assert what in _error(body)


async def test_an_idle_sse_stream_outlives_the_read_timeout(timeline: Timeline) -> None:
    first_event_out = asyncio.Event()
    go_on = asyncio.Event()

    async def sse(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        event = b'data: {"jsonrpc":"2.0","method":"notifications/progress"}\n\n'
        writer.write(_head(None, b"text/event-stream") + b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
        await go_on.wait()
        final = b'data: {"jsonrpc":"2.0","id":7,"result":{}}\n\n'
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(final), final))
        await writer.drain()

    async def stalled(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        await first_event_out.wait()
        writer.write(_head(100) + b"{")
        await writer.drain()
        await reader.read()

    async with (
        raw_server(sse) as raw_sse,
        raw_server(stalled) as raw_json,
        Proxy(limits=Limits(read_timeout=0.2), timeline=timeline) as proxy,
    ):
        stream_url = proxy.register("sse", raw_sse.origin + "/mcp", StaticTokenSource("t"))
        json_url = proxy.register("up", raw_json.origin + "/mcp", StaticTokenSource("t"))
        async with aiohttp.ClientSession() as http, http.post(stream_url, json=CALL) as resp:
            first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
            assert b"progress" in first
            first_event_out.set()
            # This JSON body starts stalling after the stream went quiet and is given up after
            # the read timeout: by then the stream has been idle for longer than that.
            status, _ = await asyncio.wait_for(_post(json_url), 10)
            assert status == 504
            go_on.set()
            rest = await asyncio.wait_for(resp.content.read(), 5)
    assert b'"result":{}' in rest
    ends = [e.detail["reason"] for e in timeline.events if e.kind == "stream.end"]
    assert ends == ["eof"]


async def test_a_large_body_abandoned_by_its_client_does_not_stall_the_next_request(
    proxy: Proxy, upstream: Upstream
) -> None:
    big = b"z" * (4 << 20)

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/big"):
            return web.Response(body=big, content_type="application/octet-stream")
        return web.Response(body=OK, content_type="application/json")

    upstream.handler = handler
    url = proxy.register("up", upstream.url + "/mcp", StaticTokenSource("t"))
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/big") as resp:
            assert len(await resp.content.readany()) > 0
        for _ in range(3):
            status, body = await asyncio.wait_for(_post(url), 5)
            assert (status, body["result"]) == (200, {})


async def test_a_malformed_head_is_a_502_that_says_so() -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n{}")
        await writer.drain()

    async with raw_server(script) as raw, Proxy() as proxy:
        url = proxy.register("up", raw.origin + "/mcp", StaticTokenSource("t"))
        status, body = await _post(url)
    assert status == 502
    assert "malformed response" in _error(body)


# -- proxies from the environment, keep-alive probes ---------------------------------------------


async def test_http_proxy_from_the_environment_carries_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        writer.write(reply(OK, JSON))
        await writer.drain()

    async with raw_server(script) as forward_proxy:
        host_port = forward_proxy.origin.removeprefix("http://")
        monkeypatch.setenv("HTTP_PROXY", f"http://user:p%40ss@{host_port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with Proxy() as proxy:
            url = proxy.register(
                "up",
                "http://mcp.example.invalid/mcp",
                StaticTokenSource("t"),
                allow_insecure_http=True,
            )
            assert await _post(url) == (200, {"jsonrpc": "2.0", "id": 7, "result": {}})
    (request,) = forward_proxy.requests
    lines = request.split(b"\r\n")
    assert lines[0] == b"POST http://mcp.example.invalid/mcp HTTP/1.1"
    assert b"Authorization: Bearer t" in lines
    assert b"Proxy-Authorization: Basic dXNlcjpwQHNz" in lines  # user:p@ss


def test_no_proxy_and_loopback_upstreams_go_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    assert env_proxy("https://internal.example/mcp") is None
    assert env_proxy("https://127.0.0.1:9000/mcp") is None
    assert env_proxy("https://localhost:9000/mcp") is None
    via = env_proxy("https://mcp.example.com/mcp")
    assert via is not None
    assert str(via.url) == "http://127.0.0.1:3128"


def test_upstream_sockets_probe_dead_peers() -> None:
    info = socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)[0]
    sock = keepalive_socket(info)
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getblocking() is False
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 75
    finally:
        sock.close()


async def test_a_401_whose_body_is_cut_is_still_replayed() -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        if total == 1:
            writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 100\r\n\r\n{")
            await writer.drain()
            writer.close()
        else:
            writer.write(reply(OK, JSON))
            await writer.drain()

    tokens = iter(["t1", "t2"])

    async def fetch() -> str:
        return next(tokens)

    async with raw_server(script) as raw, Proxy() as proxy:
        url = proxy.register("up", raw.origin + "/mcp", CallableTokenSource(fetch))
        assert await _post(url) == (200, {"jsonrpc": "2.0", "id": 7, "result": {}})
    assert [b"Bearer t1" in r for r in raw.requests] == [True, False]
    assert b"Authorization: Bearer t2" in raw.requests[1]


async def test_a_final_401_whose_body_stalls_is_a_504_not_the_tail_of_its_body() -> None:
    # Every send meets a 401 whose body drips: its first part, a pause of one and a half read
    # timeouts, then the rest. The answer the client gets is the stall (504): never the 401
    # with the part read before the stall lost and the rest passed off as the whole body.
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        writer.write(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            b'14\r\n{"error":"FIRST-PART\r\n'
        )
        await writer.drain()
        await asyncio.sleep(0.75)  # the drip under test, not a wait for the proxy
        with contextlib.suppress(ConnectionError):
            writer.write(b'e\r\n-SECOND-PART"}\r\n0\r\n\r\n')
            await writer.drain()

    async with raw_server(script) as raw, Proxy(limits=Limits(read_timeout=0.5)) as proxy:
        url = proxy.register("up", raw.origin + "/mcp", StaticTokenSource("t"))
        status, body = await asyncio.wait_for(_post(url), 10)
    assert status == 504, body
    assert "no body bytes for 0.5 s" in _error(body)
    assert len(raw.requests) == 2  # the 401 was replayed once, as any 401 is


async def test_a_pooled_connection_cut_during_the_answer_is_not_resent() -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        if n == 1:
            writer.write(reply(OK, JSON))
        else:
            # The server took the request and began to answer: it must not run twice.
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        await writer.drain()
        if n > 1:
            writer.close()

    async with raw_server(script) as raw, Proxy() as proxy:
        url = proxy.register("up", raw.origin + "/mcp", StaticTokenSource("t"))
        assert (await _post(url))[0] == 200
        status, body = await _post(url)
    assert status == 502
    _error(body)
    assert (raw.connections, len(raw.requests)) == (1, 2)
