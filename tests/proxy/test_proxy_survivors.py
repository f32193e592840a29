"""Behaviour the mutation run (``benchmarks/mutation.py``) found unguarded: each test here kills a
mutant that survived both the scenario catalogue and the request-path tests (the triage is in
``benchmarks/mutation_triage.toml``)."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import Upstream
from token_helpers import drive, respond, scripted_endpoint, token_response

from freshtoken import ManualClock, Timeline, TokenSourceError
from freshtoken._serve import LoopbackSite
from freshtoken.proxy import (
    CallableTokenSource,
    ClientCredentialsSource,
    Limits,
    Proxy,
    RefreshTokenSource,
    StaticTokenSource,
    default_matcher,
    tool_error_matcher,
)
from freshtoken.proxy._endpoint import sanitize_description


def _error(data: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "no", "data": data}}


@pytest.mark.parametrize(
    ("data", "auth"),
    [({"code": 401}, True), ({"code": 400}, False), ({"code": 402}, False), (401, True)],
)
def test_an_http_401_as_a_number_in_error_data_is_an_auth_failure(data: Any, auth: bool) -> None:
    assert default_matcher(_error(data)) is auth


@pytest.mark.parametrize("error", [42, None, ["authentication_failed"], True])
def test_an_error_that_is_neither_an_object_nor_a_string_is_not_an_auth_failure(
    error: Any,
) -> None:
    assert default_matcher({"jsonrpc": "2.0", "id": 1, "error": error}) is False


@pytest.mark.parametrize(
    "content",
    [
        "invalid token",  # not a list of content items
        [{"text": "invalid token"}],  # an item without a type
        [{"type": "image", "data": "invalid token"}],
    ],
)
def test_a_tool_error_is_read_only_in_its_text_items(content: Any) -> None:
    result = {"jsonrpc": "2.0", "id": 1, "result": {"isError": True, "content": content}}
    assert tool_error_matcher(result) is False
    text = [{"type": "text", "text": "invalid token"}]
    assert tool_error_matcher({**result, "result": {"isError": True, "content": text}}) is True


def test_escapes_use_the_shortest_form_that_fits_the_code_point() -> None:
    # U+FFFF is the last code point of the \u form; U+E0001 (a tag character) needs \U.
    assert sanitize_description("a\uffffb\U000e0001") == "a\\uffffb\\U000e0001"
    assert sanitize_description("\x1b\u202e") == "\\x1b\\u202e"


async def test_an_error_code_is_quoted_up_to_64_characters() -> None:
    async with scripted_endpoint(respond(400, {"error": "e" * 65})) as endpoint:
        source = RefreshTokenSource(endpoint.url, "c", refresh_token="rt", max_retries=0)
        with pytest.raises(TokenSourceError) as caught:
            await source.token()
        await source.aclose()
    assert f"({'e' * 63}…)" in str(caught.value)
    async with scripted_endpoint(respond(400, {"error": "e" * 64})) as endpoint:
        source = RefreshTokenSource(endpoint.url, "c", refresh_token="rt", max_retries=0)
        with pytest.raises(TokenSourceError) as caught:
            await source.token()
        await source.aclose()
    assert f"({'e' * 64})" in str(caught.value)


async def test_an_unreadable_retry_after_falls_back_to_the_backoff() -> None:
    clock = ManualClock()
    timeline = Timeline()
    async with scripted_endpoint(
        respond(503, {}, {"Retry-After": "soon, probably"}), token_response()
    ) as endpoint:
        source = RefreshTokenSource(
            endpoint.url, "c", refresh_token="rt", clock=clock, timeline=timeline
        )
        assert await drive(clock, source.token()) == "at-1"
        await source.aclose()
    (retry,) = timeline.select(kind="refresh.retry")
    assert 0.125 <= retry.detail["delay"] <= 0.25


async def test_an_upstream_redirect_goes_back_to_the_client_as_it_came(
    upstream: Upstream, proxy: Proxy
) -> None:
    async def redirect(request: web.Request) -> web.StreamResponse:
        if request.path == "/mcp":
            raise web.HTTPTemporaryRedirect("/elsewhere")
        return web.json_response({"followed": True})

    upstream.handler = redirect
    url = proxy.register("t", f"{upstream.url}/mcp", StaticTokenSource("tok"))
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json={}, allow_redirects=False) as response,
    ):
        assert response.status == 307
        assert response.headers["Location"] == "/elsewhere"
    # The proxy never followed it: the bearer went to the target's URL only.
    assert [seen.path_qs for seen in upstream.seen] == ["/mcp"]


async def test_a_body_just_over_one_mib_goes_upstream_whole_and_without_a_warning() -> None:
    # aiohttp warns about a bytes body over 1 MiB (and the suite turns warnings into errors);
    # the proxy sends such a body in chunks.
    body = b"x" * (1024 * 1024 + 1)
    received: list[bytes] = []

    async def store(request: web.Request) -> web.StreamResponse:
        received.append(await request.read())
        return web.json_response({"jsonrpc": "2.0", "id": 1, "result": {}})

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post("/mcp", store)
    site = LoopbackSite(app)
    await site.start()
    try:
        async with (
            Proxy(limits=Limits(max_body=4 * 1024 * 1024)) as proxy,
            aiohttp.ClientSession() as session,
        ):
            url = proxy.register("t", f"{site.url}/mcp", StaticTokenSource("tok"))
            async with session.post(
                url, data=io.BytesIO(body), headers={"Content-Type": "application/json"}
            ) as response:
                assert response.status == 200
    finally:
        await site.stop()
    assert received == [body]


async def test_the_leading_arguments_of_a_token_source_can_be_named() -> None:
    async def fetch() -> str:
        return "tok"

    assert await CallableTokenSource(fetch=fetch).token() == "tok"
    source = ClientCredentialsSource(
        token_endpoint="http://127.0.0.1:9/token", client_id="c", client_secret="s"
    )
    assert source.client_id == "c"
    await source.aclose()
