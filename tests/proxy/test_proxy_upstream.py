"""The proxy's upstream HTTP/1.1 client against a raw loopback server that scripts every byte."""

from __future__ import annotations

import asyncio

import pytest
from proxy_raw_server import raw_server, reply

from freshtoken.proxy._upstream import _HIGH_WATER, Upstream


async def _pieces(writer: asyncio.StreamWriter, data: bytes, size: int) -> None:
    for i in range(0, len(data), size):
        writer.write(data[i : i + size])
        await writer.drain()
        # Each piece reaches the client in its own read.
        await asyncio.sleep(0)


@pytest.mark.parametrize("piece", [1, 3, 7, 1000])
async def test_chunked_and_fixed_bodies_survive_any_split_and_the_connection_is_reused(
    piece: int,
) -> None:
    chunked = b"HTTP/1.1 200 Fine Thanks\r\nTransfer-Encoding: chunked\r\nX-A: 1 \r\nX-A: 2\r\n\r\n"
    chunked += b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: x\r\n\r\n"

    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        await _pieces(writer, chunked if n % 2 else reply(b"fixed"), piece)

    async with raw_server(script) as raw, Upstream(connect_timeout=5) as client:
        for _ in range(2):
            first = await client.request("POST", raw.origin, "/a?b", "X: y\r\n", b"{}")
            assert (first.status, first.reason, first.content_length) == (200, "Fine Thanks", None)
            assert first.headers.getall("X-A") == ["1", "2"]
            assert await first.read() == b"hello world"
            # Trailers are not headers: the head went out before they arrived.
            assert "X-Trailer" not in first.headers
            first.close()
            second = await client.request("GET", raw.origin, "/c", "", b"")
            assert (second.status, second.content_length) == (200, 5)
            assert await second.read() == b"fixed"
            second.close()
    assert raw.connections == 1
    assert raw.requests[0].startswith(b"POST /a?b HTTP/1.1\r\nHost: 127.0.0.1:")
    assert raw.requests[0].endswith(b"\r\nX: y\r\nContent-Length: 2\r\n\r\n{}")
    assert b"Content-Length" not in raw.requests[1]


@pytest.mark.parametrize(
    ("response", "method", "body", "reused"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", "GET", b"ok", 0),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "GET", b"ok", 0),
        (b"HTTP/1.1 204 No Content\r\n\r\n", "GET", b"", 1),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", "GET", b"", 1),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", "HEAD", b"", 1),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HEAD", b"", 1),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            "POST",
            b"ok",
            1,
        ),
        (
            b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            "POST",
            b"ok",
            1,
        ),
    ],
)
async def test_framing_without_a_body_interim_responses_and_connection_close(
    response: bytes, method: str, body: bytes, reused: int
) -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        writer.write(response)
        await writer.drain()

    async with raw_server(script) as raw, Upstream(connect_timeout=5) as client:
        for _ in range(2):
            resp = await client.request(method, raw.origin, "/", "", b"")
            # The final response's status, after any interim ones.
            assert resp.status == int(response.rsplit(b"HTTP/1.", 1)[1][2:5])
            assert "Link" not in resp.headers
            assert await resp.read() == body
            resp.close()
    assert raw.connections == 2 - reused


async def test_a_body_delimited_by_close_and_cut_fixed_and_chunked_bodies() -> None:
    heads = [
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n",
    ]

    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        writer.write(heads[total - 1] + b"abc")
        await writer.drain()
        writer.close()

    async with raw_server(script) as raw, Upstream(connect_timeout=5) as client:
        resp = await client.request("GET", raw.origin, "/", "", b"")
        assert resp.content_length is None
        assert await resp.read() == b"abc"
        resp.close()
        for _ in range(2):
            cut = await client.request("GET", raw.origin, "/", "", b"")
            assert await cut.readany() == b"abc"
            with pytest.raises(ConnectionError):
                await cut.readany()
            cut.close()
    assert raw.connections == 3


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_stale_pooled_connection_is_retried_only_for_idempotent_methods(
    method: str,
) -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        if n == 1:
            writer.write(reply(b"one"))
            await writer.drain()
        else:
            # A later request on the same connection is dropped unanswered.
            writer.close()

    async with raw_server(script) as raw, Upstream(connect_timeout=5) as client:
        first = await client.request(method, raw.origin, "/", "", b"")
        assert await first.read() == b"one"
        first.close()
        if method == "GET":
            again = await client.request(method, raw.origin, "/", "", b"")
            assert await again.read() == b"one"
            again.close()
            assert raw.connections == 2
        else:
            with pytest.raises(ConnectionError):
                await client.request(method, raw.origin, "/", "", b"")
            assert raw.connections == 1


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"SPDY/3 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
        b"HTTP/1.1 200 OK\r\n folded: header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX",
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000,
    ],
)
async def test_a_malformed_response_is_a_connection_error(response: bytes) -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        writer.write(response)
        await writer.drain()
        await reader.read()

    async with raw_server(script) as raw, Upstream(connect_timeout=5) as client:

        async def exchange() -> bytes:
            resp = await client.request("GET", raw.origin, "/", "", b"")
            try:
                return await resp.read()
            finally:
                resp.close()

        with pytest.raises(ConnectionError):
            await exchange()
        # The connection is not reused after a malformed response.
        await asyncio.wait_for(raw.disconnected.wait(), 5)


@pytest.mark.parametrize("extra", [b"HTTP/1.1 200 OK\r\n\r\n", b"junk"])
async def test_bytes_after_a_complete_response_drop_the_connection(extra: bytes) -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        writer.write(reply(b"ok") + extra)
        await writer.drain()

    async with raw_server(script) as raw, Upstream(connect_timeout=5) as client:
        for _ in range(2):
            resp = await client.request("GET", raw.origin, "/", "", b"")
            assert await resp.read() == b"ok"
            resp.close()
    assert raw.connections == 2


async def test_a_large_body_is_paced_by_the_reader_and_arrives_whole() -> None:
    body = bytes(range(256)) * 32768  # 8 MiB, well past the high-water mark and socket buffers

    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        writer.write(reply(body))
        await writer.drain()

    async with raw_server(script) as raw, Upstream(connect_timeout=5) as client:
        resp = await client.request("GET", raw.origin, "/", "", b"")
        conn = resp._conn
        assert conn is not None
        async with asyncio.timeout(5):
            while not conn.paused:
                await asyncio.sleep(0.001)
        # Reading stopped with a bounded buffer; one socket read may overshoot the mark.
        assert resp._size <= _HIGH_WATER + 256 * 1024
        received = bytearray()
        while chunk := await resp.readany():
            received += chunk
            await asyncio.sleep(0)
        assert received == body
        resp.close()
        again = await client.request("GET", raw.origin, "/", "", b"")
        assert len(await again.read()) == len(body)
        again.close()
    assert raw.connections == 1


async def test_closing_an_unread_response_drops_the_connection() -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        await reader.read()  # returns once the client closes

    async with raw_server(script) as raw, Upstream(connect_timeout=5) as client:
        resp = await client.request("GET", raw.origin, "/", "", b"")
        resp.close()
        await asyncio.wait_for(raw.disconnected.wait(), 5)


async def test_a_request_cancelled_before_the_head_closes_the_connection() -> None:
    asked = asyncio.Event()

    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        asked.set()
        await reader.read()  # never answers; returns once the client closes

    async with raw_server(script) as raw, Upstream(connect_timeout=5) as client:
        call = asyncio.ensure_future(client.request("POST", raw.origin, "/", "", b"{}"))
        await asyncio.wait_for(asked.wait(), 5)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.wait_for(raw.disconnected.wait(), 5)


async def test_a_refused_connection_and_a_closed_client_are_connection_errors() -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, total: int
    ) -> None:
        raise AssertionError("no request expected")

    async with raw_server(script) as raw:
        origin = raw.origin
    client = Upstream(connect_timeout=5)
    with pytest.raises(ConnectionRefusedError):
        await client.request("GET", origin, "/", "", b"")
    await client.close()
    with pytest.raises(ConnectionError):
        await client.request("GET", origin, "/", "", b"")
