"""Forwarding mechanics against a tiny programmable upstream over real sockets."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web
from conftest import Upstream
from yarl import URL

from freshtoken import Timeline, fingerprint
from freshtoken.proxy import (
    CallableTokenSource,
    Limits,
    Proxy,
    RefreshTokenSource,
    StaticTokenSource,
)


async def test_forwards_method_path_query_body_and_end_to_end_headers(
    proxy: Proxy, upstream: Upstream
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=202,
            body=b'{"ok": true}',
            headers={
                "Content-Type": "application/json",
                "Mcp-Session-Id": "s-1",
                "WWW-Authenticate": 'Bearer resource_metadata="x"',
                "Connection": "X-Hop",
                "X-Hop": "secret-hop",
                "X-End": "kept",
            },
        )

    upstream.handler = handler
    url = proxy.register("up", upstream.url + "/mcp", StaticTokenSource("tok-A"))
    assert url == f"{proxy.url}/up/mcp"
    async with aiohttp.ClientSession() as client:
        resp = await client.post(
            URL(url + "/sub?x=1&y=%2F", encoded=True),
            data=b'{"jsonrpc":"2.0","id":7,"method":"ping"}',
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
                "Mcp-Session-Id": "s-1",
                "MCP-Protocol-Version": "2025-11-25",
                "Last-Event-ID": "e-3",
                "Mcp-Method": "ping",
                "Mcp-Name": "n",
                "Authorization": "Bearer client-must-not-leak",
                "Proxy-Authorization": "Basic nope",
                "Connection": "keep-alive, X-Drop-Me",
                "X-Drop-Me": "1",
                "TE": "trailers",
                "Upgrade": "h2c",
            },
        )
        assert resp.status == 202
        assert await resp.read() == b'{"ok": true}'
        assert resp.headers["Mcp-Session-Id"] == "s-1"
        assert resp.headers["WWW-Authenticate"] == 'Bearer resource_metadata="x"'
        assert resp.headers["X-End"] == "kept"
        assert "X-Hop" not in resp.headers
    [seen] = upstream.seen
    assert seen.method == "POST"
    assert seen.path_qs == "/mcp/sub?x=1&y=%2F"
    assert seen.body == b'{"jsonrpc":"2.0","id":7,"method":"ping"}'
    h = seen.headers
    assert h["authorization"] == ["Bearer tok-A"]
    assert "proxy-authorization" not in h
    assert "x-drop-me" not in h
    assert "te" not in h
    assert "upgrade" not in h
    for name, value in [
        ("accept", "application/json, text/event-stream"),
        ("mcp-session-id", "s-1"),
        ("mcp-protocol-version", "2025-11-25"),
        ("last-event-id", "e-3"),
        ("mcp-method", "ping"),
        ("mcp-name", "n"),
        ("content-type", "application/json"),
    ]:
        assert h[name] == [value]
    assert h["host"] == [upstream.url.removeprefix("http://")]
    assert h["accept-encoding"] == ["identity"]


async def test_get_and_delete_pass_through(proxy: Proxy, upstream: Upstream) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=405 if request.method == "GET" else 200)

    upstream.handler = handler
    url = proxy.register("up", upstream.url + "/mcp", StaticTokenSource("t"))
    async with aiohttp.ClientSession() as client:
        assert (await client.get(url)).status == 405
        assert (await client.delete(url, headers={"Mcp-Session-Id": "s"})).status == 200
    assert [s.method for s in upstream.seen] == ["GET", "DELETE"]
    assert upstream.seen[1].headers["mcp-session-id"] == ["s"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "evil.example:80"}, 403),
        ({"Host": "127.0.0.1.evil.example"}, 403),
        ({"Origin": "https://evil.example"}, 403),
        ({"Origin": "null"}, 403),
        ({"Origin": "http://localhost:3000"}, 200),
        ({"Origin": "http://[::1]:9"}, 200),
        ({"Origin": "https://app.example"}, 200),
        ({"Host": "localhost:1234"}, 200),
    ],
)
async def test_dns_rebinding_guard(
    upstream: Upstream, headers: dict[str, str], status: int
) -> None:
    async with Proxy(allowed_origins=["https://app.example"]) as proxy:
        url = proxy.register("up", upstream.url + "/mcp", StaticTokenSource("t"))
        async with aiohttp.ClientSession() as client:
            resp = await client.post(url, json={"jsonrpc": "2.0", "id": 1}, headers=headers)
            assert resp.status == status
            if status == 403:
                body = await resp.json()
                assert body["error"]["code"] == -32000
    assert len(upstream.seen) == (status == 200)


async def test_capability_secret_and_unknown_targets_are_404(
    proxy: Proxy, upstream: Upstream
) -> None:
    url = proxy.register("up", upstream.url + "/mcp", StaticTokenSource("t"))
    assert proxy.secret
    assert proxy.secret in url
    assert len(proxy.secret) >= 24
    async with aiohttp.ClientSession() as client:
        for bad in (
            f"{proxy.base_url}/up/mcp",
            f"{proxy.base_url}/wrong-secret/up/mcp",
            f"{proxy.url}/other/mcp",
            f"{proxy.url}/_control/nothing",
        ):
            resp = await client.post(bad, json={})
            assert resp.status == 404, bad
    assert upstream.seen == []


async def test_secret_can_be_disabled(upstream: Upstream) -> None:
    async with Proxy(secret="") as proxy:
        url = proxy.register("up", upstream.url + "/mcp", StaticTokenSource("t"))
        assert url == f"{proxy.base_url}/up/mcp"
        async with aiohttp.ClientSession() as client:
            assert (await client.post(url, json={})).status == 200


@pytest.mark.parametrize("chunked", [False, True])
async def test_body_over_limit_is_413(upstream: Upstream, chunked: bool) -> None:
    async def body() -> object:
        yield b"x" * 600
        yield b"x" * 600

    async with Proxy(limits=Limits(max_body=1000)) as proxy:
        url = proxy.register("up", upstream.url + "/mcp", StaticTokenSource("t"))
        async with aiohttp.ClientSession() as client:
            resp = await client.post(url, data=body() if chunked else b"x" * 1001)
            assert resp.status == 413
            ok = await client.post(url, data=b"x" * 1000)
            assert ok.status == 200
    assert [len(s.body) for s in upstream.seen] == [1000]


async def test_unreachable_upstream_is_502_with_json_rpc_error_echoing_the_id(
    proxy: Proxy, timeline: Timeline
) -> None:
    sock_holder = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = sock_holder.sockets[0].getsockname()[1]
    sock_holder.close()
    await sock_holder.wait_closed()
    url = proxy.register("gone", f"http://127.0.0.1:{port}/mcp", StaticTokenSource("t"))
    async with aiohttp.ClientSession() as client:
        resp = await asyncio.wait_for(
            client.post(url, json={"jsonrpc": "2.0", "id": "abc", "method": "tools/list"}), 10
        )
        assert resp.status == 502
        body = await resp.json()
    assert body["id"] == "abc"
    assert body["jsonrpc"] == "2.0"
    assert "gone" in body["error"]["message"]
    assert timeline.count(actor="proxy", kind="response") == 1


async def test_client_control_path_forces_a_refresh(proxy: Proxy, upstream: Upstream) -> None:
    tokens = iter(["t1", "t2", "t3"])

    async def fetch() -> str:
        return next(tokens)

    url = proxy.register("up", upstream.url + "/mcp", CallableTokenSource(fetch))
    async with aiohttp.ClientSession() as client:
        await client.post(url, json={})
        resp = await client.post(f"{proxy.control_url}/refresh/up")
        assert resp.status == 200
        assert (await resp.json()) == {"target": "up", "token": fingerprint("t2")}
        assert (await client.get(f"{proxy.control_url}/refresh/up")).status == 405
        assert (await client.post(f"{proxy.control_url}/refresh/nope")).status == 404
        await client.post(url, json={})
    await proxy.refresh("up")
    assert [s.headers["authorization"] for s in upstream.seen] == [["Bearer t1"], ["Bearer t2"]]


async def test_response_streams_chunk_by_chunk(proxy: Proxy, upstream: Upstream) -> None:
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"jsonrpc":"2.0","method":"notifications/progress"}\n\n')
        await release.wait()
        await resp.write(b'data: {"jsonrpc":"2.0","id":1,"result":{}}\n\n')
        await resp.write_eof()
        return resp

    upstream.handler = handler
    url = proxy.register("up", upstream.url + "/mcp", StaticTokenSource("t"))
    async with aiohttp.ClientSession() as client:
        resp = await client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/call"})
        assert resp.status == 200
        first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
        assert b"notifications/progress" in first
        release.set()
        rest = await asyncio.wait_for(resp.content.read(), 5)
        assert b'"result"' in rest


async def test_upstream_death_mid_stream_ends_the_client_response(
    proxy: Proxy, upstream: Upstream, timeline: Timeline
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'id: 1\ndata: {"jsonrpc":"2.0","method":"notifications/progress"}\n\n')
        assert request.transport is not None
        request.transport.abort()
        return resp

    upstream.handler = handler
    url = proxy.register("up", upstream.url + "/mcp", StaticTokenSource("t"))
    received: list[bytes] = []

    async def read_all(resp: aiohttp.ClientResponse) -> None:
        async with asyncio.timeout(5):
            while chunk := await resp.content.readany():
                received.append(chunk)

    async with aiohttp.ClientSession() as client:
        payload = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
        async with client.post(url, json=payload) as resp:
            # The client sees the cut (no last chunk), never a clean end that hides it.
            with pytest.raises(aiohttp.ClientPayloadError):
                await read_all(resp)
    assert b"notifications/progress" in b"".join(received)
    end = await timeline.wait_for(lambda e: e.kind == "stream.end", timeout=5)
    assert end.detail["reason"] == "upstream-error"


async def test_client_disconnect_cancels_the_upstream_request(
    proxy: Proxy, timeline: Timeline
) -> None:
    upstream_closed = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        event = b'data: {"jsonrpc":"2.0","method":"notifications/progress"}\n\n'
        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
        # An idle stream: the only way this returns is the proxy closing the connection.
        while await reader.read(1024):
            pass
        upstream_closed.set()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        url = proxy.register("up", f"http://127.0.0.1:{port}/mcp", StaticTokenSource("t"))
        async with aiohttp.ClientSession() as client:
            resp = await client.get(url, headers={"Accept": "text/event-stream"})
            await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
            assert not upstream_closed.is_set()
            resp.close()
        await asyncio.wait_for(upstream_closed.wait(), 5)
        end = await timeline.wait_for(lambda e: e.kind == "stream.end", timeout=5)
        assert end.detail["reason"] == "client-gone"
    finally:
        server.close()
        await server.wait_closed()


async def test_json_rpc_error_body_is_never_returned_for_plain_success(
    proxy: Proxy, upstream: Upstream
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        text = {"type": "text", "text": "the words authentication failed, echoed"}
        return web.json_response({"jsonrpc": "2.0", "id": 1, "result": {"content": [text]}})

    upstream.handler = handler
    url = proxy.register("up", upstream.url + "/mcp", StaticTokenSource("t"))
    async with aiohttp.ClientSession() as client:
        resp = await client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/call"})
        assert json.loads(await resp.read())["result"]["content"][0]["text"].startswith("the")
    assert len(upstream.seen) == 1


async def test_unreachable_token_endpoint_is_503_with_json_rpc_error(
    proxy: Proxy, upstream: Upstream
) -> None:
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    source = RefreshTokenSource(
        f"http://127.0.0.1:{port}/token", "client", refresh_token="rt", max_retries=0
    )
    url = proxy.register("up", upstream.url + "/mcp", source)
    async with aiohttp.ClientSession() as client:
        resp = await asyncio.wait_for(
            client.post(url, json={"jsonrpc": "2.0", "id": 4, "method": "tools/list"}), 10
        )
        assert resp.status == 503
        body = await resp.json()
    assert body["id"] == 4
    assert body["error"]["data"] == {"target": "up", "reason": "TokenSourceError"}
    assert "up" in body["error"]["message"]
    assert "rt" not in body["error"]["message"].split()
    assert upstream.seen == []


@pytest.mark.parametrize("custom", [False, True])
async def test_json_bodies_are_classified_on_the_parsed_body(
    upstream: Upstream, custom: bool
) -> None:
    # The stale token gets a success body that only a custom matcher calls a failure, and an
    # error key spelled with a JSON escape that the built-in rule must still see.
    stale_body = (
        b'{"jsonrpc":"2.0","id":7,"result":{"stale":true}}'
        if custom
        else b'{"jsonrpc":"2.0","id":7,"\\u0065rror":{"code":"authentication_failed"}}'
    )

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.headers["Authorization"] == "Bearer t1":
            return web.Response(body=stale_body, content_type="application/json")
        return web.json_response({"jsonrpc": "2.0", "id": 7, "result": {}})

    def stale(message: object) -> bool:
        return isinstance(message, dict) and message.get("result") == {"stale": True}

    tokens = iter(["t1", "t2"])

    async def fetch() -> str:
        return next(tokens)

    upstream.handler = handler
    async with Proxy(matcher=stale if custom else None) as proxy:
        url = proxy.register("up", upstream.url + "/mcp", CallableTokenSource(fetch))
        async with aiohttp.ClientSession() as client:
            resp = await client.post(url, json={"jsonrpc": "2.0", "id": 7, "method": "x"})
            assert json.loads(await resp.read())["result"] == {}
    assert [s.headers["authorization"] for s in upstream.seen] == [["Bearer t1"], ["Bearer t2"]]
