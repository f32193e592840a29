"""The token endpoint as a hostile peer, on real sockets: client authentication, what is retried
and what is never re-sent, Retry-After and jitter, the deadline and the size cap, token syntax,
and sanitized error descriptions (also through the proxy)."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from token_helpers import (
    drip,
    drive,
    flood,
    hang_up,
    respond,
    scripted_endpoint,
    token_response,
)

from freshtoken import (
    GrantInDoubtError,
    InvalidGrantError,
    ManualClock,
    Timeline,
    TokenSourceError,
)
from freshtoken._serve import LoopbackSite
from freshtoken.fakes import FakeAuthorizationServer
from freshtoken.proxy import (
    CallableTokenSource,
    ClientCredentialsSource,
    Proxy,
    RefreshTokenSource,
)
from freshtoken.proxy._endpoint import sanitize_description

AWKWARD_SECRET = "s+cr%t&x:y z/é="
# The fake AS compares secrets as str, which refuses non-ASCII: its test secret stays ASCII.
AWKWARD_ASCII_SECRET = "s+cr%t&x:y z/="
AWKWARD_ID = "app:1 +%&"


# ---- finding 1: client_secret_basic ----------------------------------------------------------


async def test_basic_credentials_are_form_urlencoded_before_base64() -> None:
    async with scripted_endpoint(token_response()) as endpoint:
        source = ClientCredentialsSource(endpoint.url, AWKWARD_ID, AWKWARD_SECRET)
        await source.token()
        await source.aclose()
    [seen] = endpoint.requests
    scheme, _, encoded = seen.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    assert (
        base64.b64decode(encoded).decode() == "app%3A1+%2B%25%26:s%2Bcr%25t%26x%3Ay+z%2F%C3%A9%3D"
    )
    assert "client_secret" not in seen.form


@pytest.mark.parametrize("grant", ["refresh_token", "client_credentials"])
async def test_a_secret_with_reserved_characters_authenticates_at_the_fake_as(grant: str) -> None:
    async with FakeAuthorizationServer() as auth:
        client = auth.register_client(client_id=AWKWARD_ID, client_secret=AWKWARD_ASCII_SECRET)
        source: RefreshTokenSource | ClientCredentialsSource
        if grant == "refresh_token":
            pair = auth.issue_tokens(client.client_id)
            source = RefreshTokenSource(
                auth.token_endpoint,
                AWKWARD_ID,
                AWKWARD_ASCII_SECRET,
                refresh_token=pair.refresh_token,
            )
        else:
            source = ClientCredentialsSource(auth.token_endpoint, AWKWARD_ID, AWKWARD_ASCII_SECRET)
        try:
            token = await source.token()
        finally:
            await source.aclose()
        info = auth.validate_access_token(token)
        assert info is not None
        [seen] = auth.token_requests_seen(grant)
        assert (seen.client_id, seen.status) == (AWKWARD_ID, 200)
        auth.check()


# ---- finding 2: never re-send a refresh grant that may have been processed -------------------


async def test_a_processed_refresh_grant_whose_answer_is_late_is_never_resent() -> None:
    as_clock = ManualClock()
    async with FakeAuthorizationServer(clock=as_clock) as auth:
        pair = auth.issue_tokens()
        assert pair.refresh_token is not None
        # The server processes the grant (rotating the refresh token), then answers only after
        # 60 s on its own clock, which never moves: the client's read timeout fires first.
        auth.fail_next(1, status=200, error=None, delay=60)
        source = RefreshTokenSource(
            auth.token_endpoint,
            auth.client_id,
            auth.client_secret,
            refresh_token=pair.refresh_token,
            timeout=0.2,
            max_retries=5,
            clock=ManualClock(),
        )
        with pytest.raises(GrantInDoubtError, match="ReadTimeout") as info:
            await source.token()
        assert "never sent again" in str(info.value)
        for _ in range(3):
            with pytest.raises(GrantInDoubtError):
                await source.token()
        assert len(auth.token_requests_seen("refresh_token")) == 1
        await source.aclose()
        # Why: the grant was processed, so re-sending the old refresh token would have been
        # taken for a replay and revoked the whole family.
        replay = RefreshTokenSource(
            auth.token_endpoint,
            auth.client_id,
            auth.client_secret,
            refresh_token=pair.refresh_token,
        )
        with pytest.raises(InvalidGrantError, match="revoked"):
            await replay.token()
        await replay.aclose()


async def test_a_connection_lost_after_the_request_was_written_is_never_resent() -> None:
    async with scripted_endpoint(hang_up, token_response()) as endpoint:
        source = RefreshTokenSource(endpoint.url, "c", "s", refresh_token="rt-1", max_retries=3)
        with pytest.raises(GrantInDoubtError, match="RemoteProtocolError"):
            await source.token()
        with pytest.raises(GrantInDoubtError):
            await source.refresh(None)
        assert len(endpoint.requests) == 1
        assert source.terminal_error is not None
        # A new refresh token (after authorizing again) ends the terminal state.
        source.set_refresh_token("rt-2")
        assert await source.token() == "at-1"
        assert [r.form["refresh_token"] for r in endpoint.requests] == ["rt-1", "rt-2"]
        await source.aclose()


@pytest.mark.parametrize(
    "answer",
    [
        respond(200, b"<html>not a token response</html>"),
        respond(200, {"token_type": "Bearer"}),
    ],
    ids=["garbage-200", "200-without-token"],
)
async def test_a_200_that_is_not_a_token_response_is_not_resent(answer: Any) -> None:
    async with scripted_endpoint(answer, default=token_response()) as endpoint:
        source = RefreshTokenSource(endpoint.url, "c", refresh_token="rt-1")
        with pytest.raises(TokenSourceError):
            await source.token()
        assert len(endpoint.requests) == 1
        await source.aclose()


async def test_a_client_credentials_grant_with_an_unknown_outcome_is_retried() -> None:
    clock = ManualClock()
    async with scripted_endpoint(hang_up, token_response()) as endpoint:
        source = ClientCredentialsSource(endpoint.url, "c", "s", clock=clock)
        assert await drive(clock, source.token()) == "at-1"
        assert len(endpoint.requests) == 2
        await source.aclose()


async def test_an_unreachable_endpoint_is_retried_then_fails() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    clock = ManualClock()
    timeline = Timeline()
    source = RefreshTokenSource(
        f"http://127.0.0.1:{port}/token",
        "c",
        refresh_token="rt",
        clock=clock,
        max_retries=2,
        timeline=timeline,
    )
    with pytest.raises(TokenSourceError, match="unavailable after 3 attempts: ConnectError"):
        await drive(clock, source.token())
    assert source.terminal_error is None  # nothing was sent: the next request may try again
    assert timeline.count(kind="refresh.retry") == 2
    await source.aclose()


async def _retry_delays(clock: ManualClock, url: str) -> list[float]:
    timeline = Timeline()
    source = RefreshTokenSource(url, "c", refresh_token="rt", clock=clock, timeline=timeline)
    await drive(clock, source.token())
    await source.aclose()
    return [e.detail["delay"] for e in timeline.select(kind="refresh.retry")]


async def test_5xx_and_429_are_retried_with_jittered_exponential_backoff() -> None:
    clock = ManualClock()
    script = [respond(503, {}), respond(429, {}), respond(502, {}), token_response()]
    async with (
        scripted_endpoint(*script) as first,
        scripted_endpoint(*script) as second,
    ):
        delays = [await _retry_delays(clock, first.url), await _retry_delays(clock, second.url)]
    for attempt_delays in delays:
        assert len(attempt_delays) == 3
        for attempt, delay in enumerate(attempt_delays, start=1):
            step = 0.25 * 2 ** (attempt - 1)
            assert step / 2 <= delay <= step
    # Jitter: two sources failing the same way do not retry in lockstep.
    assert delays[0] != delays[1]


async def test_retry_after_is_honoured() -> None:
    clock = ManualClock()
    date = email.utils.formatdate(clock.time() + 4, usegmt=True)
    async with scripted_endpoint(
        respond(429, {}, {"Retry-After": date}),
        respond(503, {}, {"Retry-After": "3"}),
        token_response(),
    ) as endpoint:
        delays = await _retry_delays(clock, endpoint.url)
    # Both are longer than the backoff (at most 0.25 s, then 0.5 s): the server's word wins.
    assert delays == [4.0, 3.0]


async def test_a_retry_after_beyond_the_bound_fails_at_once() -> None:
    async with scripted_endpoint(
        respond(503, {}, {"Retry-After": "3600"}), default=token_response()
    ) as endpoint:
        source = RefreshTokenSource(endpoint.url, "c", refresh_token="rt", max_retry_wait=30)
        with pytest.raises(TokenSourceError, match="retry after 3600 s"):
            await source.token()
        assert len(endpoint.requests) == 1
        assert source.terminal_error is None
        await source.aclose()


# ---- token endpoint limits: deadline and size cap --------------------------------------------


@pytest.mark.parametrize("head_too", [True, False], ids=["dripped-head", "dripped-body"])
async def test_a_dripping_endpoint_is_cut_off_by_the_deadline(head_too: bool) -> None:
    async with scripted_endpoint(drip(head_too=head_too)) as endpoint:
        # Each byte arrives well within the per-read timeout; only the deadline can end this.
        refresh = RefreshTokenSource(
            endpoint.url, "c", refresh_token="rt", timeout=30, deadline=0.5
        )
        with pytest.raises(GrantInDoubtError, match=r"within the 0\.5 s deadline"):
            await refresh.token()
        await refresh.aclose()
    async with scripted_endpoint(drip(head_too=head_too)) as endpoint:
        credentials = ClientCredentialsSource(
            endpoint.url, "c", "s", timeout=30, deadline=0.5, max_retries=0
        )
        with pytest.raises(TokenSourceError, match=r"within the 0\.5 s deadline"):
            await credentials.token()
        await credentials.aclose()


async def test_a_declared_huge_response_is_not_read() -> None:
    async with scripted_endpoint(flood(total=300 << 20, declare=True)) as endpoint:
        source = ClientCredentialsSource(endpoint.url, "c", "s", max_retries=0)
        with pytest.raises(TokenSourceError, match=f"{300 << 20} bytes, over {1 << 20}"):
            await source.token()
        await source.aclose()


async def test_an_undeclared_huge_response_is_cut_at_the_cap() -> None:
    total = 300 << 20
    async with scripted_endpoint(flood(total=total, declare=False)) as endpoint:
        source = RefreshTokenSource(
            endpoint.url, "c", refresh_token="rt", max_response_bytes=64 * 1024
        )
        with pytest.raises(GrantInDoubtError, match=f"over {64 * 1024} bytes"):
            await source.token()
        await source.aclose()
    # The endpoint could not push the whole body: the client stopped reading and hung up.
    assert endpoint.sent < total


# ---- finding 3: tokens outside their syntax are refused at the source ------------------------

BAD_ACCESS_TOKENS = [
    "abc\r\nX-Injected: 1",
    "abc\ndef",
    "abc\x00def",
    "two words",
    "t\u00f8ken",
    '"quoted"',
    "abc=def",
]


@pytest.mark.parametrize("bad", BAD_ACCESS_TOKENS)
async def test_a_malformed_access_token_is_never_kept_stored_or_sent(
    bad: str, tmp_path: Path
) -> None:
    store = tmp_path / "tokens.json"
    async with scripted_endpoint(token_response(bad, refresh="rt-2"), token_response()) as endpoint:
        source = RefreshTokenSource(endpoint.url, "c", refresh_token="rt-1", store=store)
        with pytest.raises(TokenSourceError, match="outside RFC 6750") as info:
            await source.token()
        assert bad not in str(info.value)
        assert not isinstance(info.value, InvalidGrantError)  # not terminal
        assert source.current is None
        # The rotated refresh token was good: it is adopted and stored, the access token not.
        assert json.loads(store.read_text()) == {"refresh_token": "rt-2"}
        assert await source.token() == "at-1"
        assert [r.form["refresh_token"] for r in endpoint.requests] == ["rt-1", "rt-2"]
        await source.aclose()


async def test_a_malformed_rotated_refresh_token_is_refused_and_never_stored(
    tmp_path: Path,
) -> None:
    store = tmp_path / "tokens.json"
    async with scripted_endpoint(token_response("good", refresh="rt\r\n2")) as endpoint:
        source = RefreshTokenSource(endpoint.url, "c", refresh_token="rt-1", store=store)
        with pytest.raises(GrantInDoubtError, match="outside RFC 6749"):
            await source.token()
        assert source.current is None
        assert not store.exists()
        await source.aclose()


async def test_a_callable_returning_a_malformed_token_is_refused() -> None:
    async def fetch() -> str:
        return "tok\r\nX-Injected: 1"

    source = CallableTokenSource(fetch)
    with pytest.raises(TokenSourceError, match="outside RFC 6750"):
        await source.token()
    assert source.current is None


async def _json_upstream() -> tuple[LoopbackSite, list[str]]:
    seen: list[str] = []

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"jsonrpc": "2.0", "id": 1, "result": {}})

    site = LoopbackSite(handle)
    await site.start()
    return site, seen


async def _call(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            url,
            json={"jsonrpc": "2.0", "id": 7, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream"},
        )
        return resp.status, await resp.json()


async def test_through_the_proxy_a_malformed_token_never_reaches_the_upstream() -> None:
    site, seen = await _json_upstream()
    try:
        async with (
            scripted_endpoint(default=token_response("abc\r\nX-Injected: yes")) as endpoint,
            Proxy() as proxy,
        ):
            source = RefreshTokenSource(endpoint.url, "c", refresh_token="rt")
            url = proxy.register("t", site.url + "/mcp", source)
            status, body = await _call(url)
            assert status == 503
            assert body["id"] == 7
            assert "X-Injected" not in json.dumps(body)
            assert seen == []
    finally:
        await site.stop()


async def test_through_the_proxy_a_grant_in_doubt_answers_502_and_is_not_resent() -> None:
    site, seen = await _json_upstream()
    try:
        async with (
            scripted_endpoint(hang_up, default=token_response()) as endpoint,
            Proxy() as proxy,
        ):
            source = RefreshTokenSource(endpoint.url, "c", refresh_token="rt-1")
            url = proxy.register("t", site.url + "/mcp", source)
            answers = [await _call(url) for _ in range(3)]
            assert [status for status, _ in answers] == [502] * 3
            assert "outcome is unknown" in answers[0][1]["error"]["message"]
            assert len(endpoint.requests) == 1
            assert seen == []
    finally:
        await site.stop()


# ---- finding 4: the AS's error_description is sanitized --------------------------------------


async def test_error_descriptions_are_sanitized_in_the_502_and_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    refresh_token = "rt-Secret-0123456789"
    description = (
        f"refresh token {refresh_token} is no good\r\nX-Forged: header\x1b[31m red\x00 "
        "\u202eevil\u2028next " + "A" * 5000
    )
    site, seen = await _json_upstream()
    try:
        async with (
            scripted_endpoint(
                respond(400, {"error": "invalid_grant", "error_description": description})
            ) as endpoint,
            Proxy() as proxy,
        ):
            source = RefreshTokenSource(
                endpoint.url, "c", "client-s3cret", refresh_token=refresh_token
            )
            url = proxy.register("t", site.url + "/mcp", source)
            status, body = await _call(url)
    finally:
        await site.stop()
    assert status == 502
    message = body["error"]["message"]
    assert "invalid_grant" in message
    assert "[redacted] is no good" in message
    assert "\\r\\nX-Forged" in message
    for escaped in ("\\x1b[31m", "\\x00", "\\u202e", "\\u2028"):
        assert escaped in message
    assert len(message) < 600
    for text in [json.dumps(body), *(r.getMessage() for r in caplog.records)]:
        assert refresh_token not in text
        assert not any(c in text for c in "\r\n\x1b\x00\u202e\u2028")
    assert any("invalid_grant" in r.getMessage() for r in caplog.records)
    assert seen == []


def test_sanitize_redacts_every_held_secret_and_caps_length() -> None:
    text = "a SECRET-1 b tokenvalue c " + "x" * 300
    out = sanitize_description(text, secrets=["SECRET-1", "tokenvalue", None, "ab"])
    assert out.startswith("a [redacted] b [redacted] c ")
    assert len(out) == 200
    assert out.endswith("…")
    assert sanitize_description("tab\there\x07") == "tab\\there\\x07"
    assert sanitize_description("ünïcode ok") == "ünïcode ok"


async def test_a_non_terminal_error_code_is_sanitized_too() -> None:
    async with scripted_endpoint(respond(400, {"error": "weird\r\nX-Forged: 1"})) as endpoint:
        source = RefreshTokenSource(endpoint.url, "c", refresh_token="rt")
        with pytest.raises(TokenSourceError) as info:
            await source.token()
        assert "HTTP 400 (weird\\r\\nX-Forged: 1)" in str(info.value)
        await source.aclose()
