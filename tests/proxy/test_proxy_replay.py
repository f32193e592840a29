"""Replays: one refresh and one replay per request, the newest token for a superseded replay, and
no replay on a tool's own error text unless asked for."""

from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp import web
from conftest import Upstream

from freshtoken import Timeline
from freshtoken.proxy import CallableTokenSource, Proxy, tool_error_matcher


def _tokens(*values: str) -> tuple[CallableTokenSource, list[str]]:
    handed: list[str] = []
    pending = iter(values)

    async def fetch() -> str:
        token = next(pending)
        handed.append(token)
        return token

    return CallableTokenSource(fetch), handed


def _bearers(upstream: Upstream) -> list[str]:
    return [seen.headers["authorization"][0].removeprefix("Bearer ") for seen in upstream.seen]


async def test_a_replay_failing_on_a_token_superseded_meanwhile_goes_out_with_the_newest(
    proxy: Proxy, upstream: Upstream, timeline: Timeline
) -> None:
    source, fetched = _tokens("t1", "t2", "t3")

    async def handler(request: web.Request) -> web.StreamResponse:
        bearer = request.headers["Authorization"]
        if bearer == "Bearer t3":
            return web.json_response({"jsonrpc": "2.0", "id": 1, "result": {}})
        if bearer == "Bearer t2":
            # While this replay is in flight, the server rotates again and another request
            # of the same client refreshes past t2.
            await source.refresh("t2")
        return web.Response(status=401)

    upstream.handler = handler
    url = proxy.register("up", upstream.url + "/mcp", source)
    async with aiohttp.ClientSession() as http:
        resp = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/call"})
        assert resp.status == 200
        assert (await resp.json())["result"] == {}
    assert _bearers(upstream) == ["t1", "t2", "t3"]
    # The first fetch and this request's one refresh; t3 came from the other refresh.
    assert fetched == ["t1", "t2", "t3"]
    replays = [e for e in timeline.events if e.kind == "replay"]
    assert len(replays) == 2


async def test_a_persistent_401_costs_two_sends_and_one_grant(
    proxy: Proxy, upstream: Upstream
) -> None:
    source, fetched = _tokens("t1", "t2", "t3")

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=401, headers={"WWW-Authenticate": 'Bearer error="invalid"'})

    upstream.handler = handler
    url = proxy.register("up", upstream.url + "/mcp", source)
    async with aiohttp.ClientSession() as http:
        resp = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/call"})
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid"'
    assert _bearers(upstream) == ["t1", "t2"]
    assert fetched == ["t1", "t2"]


@pytest.mark.parametrize("opted_in", [False, True])
async def test_tool_error_text_triggers_a_replay_only_when_opted_in(
    upstream: Upstream, opted_in: bool
) -> None:
    source, fetched = _tokens("t1", "t2")

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.headers["Authorization"] == "Bearer t2":
            return web.json_response({"jsonrpc": "2.0", "id": 1, "result": {"content": []}})
        text = {"type": "text", "text": "SyntaxError: invalid token (line 1)"}
        result = {"content": [text], "isError": True}
        return web.json_response({"jsonrpc": "2.0", "id": 1, "result": result})

    upstream.handler = handler
    async with Proxy(matcher=tool_error_matcher if opted_in else None) as proxy:
        url = proxy.register("up", upstream.url + "/mcp", source)
        async with aiohttp.ClientSession() as http:
            payload = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
            resp = await http.post(url, json=payload)
            body = json.loads(await resp.read())
    if opted_in:
        assert body["result"] == {"content": []}
        assert _bearers(upstream) == ["t1", "t2"]
        assert fetched == ["t1", "t2"]
    else:
        # The tool ran once and its own error went back to the client; no grant was spent.
        assert body["result"]["isError"] is True
        assert _bearers(upstream) == ["t1"]
        assert fetched == ["t1"]
