"""Token sources: through respx against the fake AS core (no sockets) and against the real fake AS."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import respx
from token_helpers import drive

from freshtoken import (
    InvalidGrantError,
    ManualClock,
    Timeline,
    TokenSourceError,
    fingerprint,
)
from freshtoken.fakes import FakeAuthorizationServer, FakeCA, OAuthCore, TokenPolicy, mount_respx
from freshtoken.proxy import (
    CallableTokenSource,
    ClientCredentialsSource,
    CommandTokenSource,
    RefreshTokenSource,
    StaticTokenSource,
    TokenSource,
)
from freshtoken.proxy._tokens import MAX_COMMAND_OUTPUT

ISSUER = "https://as.test"
TOKEN_ENDPOINT = ISSUER + "/token"
RESOURCE = "https://mcp.test/mcp"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def core(clock: ManualClock) -> OAuthCore:
    return OAuthCore(issuer=ISSUER, clock=clock, policy=TokenPolicy(access_ttl=60))


@pytest.fixture
def router(core: OAuthCore) -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        mount_respx(mock, core)
        yield mock


def _source(core: OAuthCore, clock: ManualClock, **kwargs: object) -> RefreshTokenSource:
    if "refresh_token" not in kwargs:
        pair = core.issue_tokens(resource=RESOURCE)
        kwargs["refresh_token"] = pair.refresh_token
    return RefreshTokenSource(
        TOKEN_ENDPOINT,
        core.client_id,
        core.client_secret,
        resource=RESOURCE,
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )


def test_every_source_satisfies_the_protocol(core: OAuthCore) -> None:
    async def fetch() -> str:
        return "t"

    sources: list[object] = [
        StaticTokenSource("t"),
        CallableTokenSource(fetch),
        CommandTokenSource(["true"]),
        RefreshTokenSource(TOKEN_ENDPOINT, "c", refresh_token="r"),
        ClientCredentialsSource(TOKEN_ENDPOINT, "c", "s"),
    ]
    assert all(isinstance(s, TokenSource) for s in sources)


async def test_refresh_grant_sends_resource_and_adopts_rotated_refresh_tokens(
    core: OAuthCore, clock: ManualClock, router: respx.MockRouter
) -> None:
    source = _source(core, clock)
    first_rt = source.refresh_token_fingerprint
    token = await source.token()
    info = core.validate_access_token(token)
    assert info is not None
    assert info.resource == RESOURCE
    assert source.refresh_token_fingerprint != first_rt
    assert await source.token() == token  # cached while valid
    assert core.token_requests == 1
    [call] = router.calls
    form = dict(x.split("=", 1) for x in call.request.content.decode().split("&"))
    assert form["grant_type"] == "refresh_token"
    assert form["resource"] == "https%3A%2F%2Fmcp.test%2Fmcp"
    # Rotation with reuse detection on: the second refresh must present the rotated token.
    second = await source.refresh(token)
    assert second != token
    assert core.validate_access_token(second) is not None
    assert core.token_requests == 2


async def test_expiry_from_expires_in_refreshes_proactively(
    core: OAuthCore, clock: ManualClock, router: respx.MockRouter
) -> None:
    source = _source(core, clock)
    first = await source.token()
    clock.advance(59)
    assert await source.token() == first
    clock.advance(2)
    second = await source.token()
    assert second != first
    assert core.token_requests == 2


async def test_single_flight_and_compare_and_swap(
    core: OAuthCore, clock: ManualClock, router: respx.MockRouter
) -> None:
    timeline = Timeline()
    source = _source(core, clock, timeline=timeline)
    stale = await source.token()
    results = await asyncio.gather(*(source.refresh(stale) for _ in range(50)))
    assert len(set(results)) == 1
    assert results[0] != stale
    assert core.token_requests == 2
    # A caller that saw the already-replaced token gets the replacement without a request.
    assert await source.refresh(stale) == results[0]
    assert core.token_requests == 2
    assert timeline.count(kind="refresh.done") == 2
    assert timeline.count(kind="refresh.start") == 2


async def test_a_cancelled_caller_does_not_cancel_the_shared_refresh(
    core: OAuthCore, clock: ManualClock, router: respx.MockRouter
) -> None:
    source = _source(core, clock)
    core.fail_next(1, status=200, error=None, delay=5)
    first = asyncio.ensure_future(source.token())
    second = asyncio.ensure_future(source.token())
    await clock.wait_for_sleepers(1)  # the fake AS is holding the answer back
    first.cancel()
    clock.advance(5)
    token = await asyncio.wait_for(second, 5)
    assert core.validate_access_token(token) is not None
    assert first.cancelled()


async def test_transient_failures_retry_with_backoff_on_the_clock(
    core: OAuthCore, clock: ManualClock, router: respx.MockRouter
) -> None:
    timeline = Timeline()
    source = _source(core, clock, timeline=timeline, max_retries=3)
    core.fail_next(1, status=503)
    core.fail_next(1, status=429, error=None)
    core.fail_next(1, status=500, garbage=True)
    token = await drive(clock, source.token())
    assert isinstance(token, str)
    assert core.validate_access_token(token) is not None
    assert core.token_requests == 4
    assert timeline.count(kind="refresh.retry") == 3


async def test_retries_are_bounded(
    core: OAuthCore, clock: ManualClock, router: respx.MockRouter
) -> None:
    source = _source(core, clock, max_retries=2)
    core.fail_next(10, status=502)
    with pytest.raises(TokenSourceError, match="after 3 attempts"):
        await drive(clock, source.token())
    assert core.token_requests == 3


@pytest.mark.parametrize("error", ["invalid_grant", "invalid_client"])
async def test_refused_grant_is_terminal_until_reconfigured(
    core: OAuthCore, clock: ManualClock, router: respx.MockRouter, error: str
) -> None:
    source = _source(core, clock)
    core.fail_next(1, status=400 if error == "invalid_grant" else 401, error=error)
    with pytest.raises(InvalidGrantError, match=error):
        await source.token()
    for _ in range(5):
        with pytest.raises(InvalidGrantError):
            await source.token()
        with pytest.raises(InvalidGrantError):
            await source.refresh(None)
    assert core.token_requests == 1
    source.set_refresh_token(core.issue_tokens(resource=RESOURCE).refresh_token or "")
    assert core.validate_access_token(await source.token()) is not None


async def test_revoked_family_gives_invalid_grant(
    core: OAuthCore, clock: ManualClock, router: respx.MockRouter
) -> None:
    source = _source(core, clock)
    token = await source.token()
    core.revoke_family(token)
    with pytest.raises(InvalidGrantError, match="invalid_grant") as info:
        await source.refresh(token)
    assert token not in str(info.value)


async def test_store_is_private_atomic_and_restores_rotation_and_expiry(
    core: OAuthCore, clock: ManualClock, router: respx.MockRouter, tmp_path: Path
) -> None:
    store = tmp_path / "state" / "tokens.json"
    source = _source(core, clock, store=store)
    token = await source.token()
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
    saved = json.loads(store.read_text())
    assert fingerprint(saved["refresh_token"]) == source.refresh_token_fingerprint
    assert saved["access_token"] == token
    assert [p.name for p in store.parent.iterdir()] == ["tokens.json"]
    # A restart resumes from the store: the still-valid access token, the rotated refresh token.
    restarted = RefreshTokenSource(
        TOKEN_ENDPOINT, core.client_id, core.client_secret, store=store, clock=clock
    )
    assert await restarted.token() == token
    assert core.token_requests == 1
    clock.advance(61)  # the stored expiry is honoured: no stale bearer is sent after a restart
    fresh = await restarted.token()
    assert fresh != token
    assert core.validate_access_token(fresh) is not None
    assert core.token_requests == 2


async def test_client_credentials_source(
    core: OAuthCore, clock: ManualClock, router: respx.MockRouter
) -> None:
    source = ClientCredentialsSource(
        TOKEN_ENDPOINT,
        core.client_id,
        core.client_secret,
        scope="mcp",
        resource=RESOURCE,
        clock=clock,
        auth_method="client_secret_post",
    )
    token = await source.token()
    info = core.validate_access_token(token)
    assert info is not None
    assert info.scope == "mcp"
    assert info.resource == RESOURCE
    assert await source.refresh(token) != token
    bad = ClientCredentialsSource(TOKEN_ENDPOINT, core.client_id, "wrong", clock=clock)
    with pytest.raises(InvalidGrantError, match="invalid_client"):
        await bad.token()


async def test_static_and_callable_sources() -> None:
    static = StaticTokenSource("fixed")
    assert await static.token() == "fixed"
    assert await static.refresh("fixed") == "fixed"

    calls: list[str] = []

    async def fetch() -> str:
        calls.append("fetch")
        return f"t{len(calls)}"

    async def force() -> str:
        calls.append("force")
        return f"t{len(calls)}"

    source = CallableTokenSource(fetch, refresh=force)
    assert await source.token() == "t1"
    assert await source.token() == "t1"
    assert await source.refresh("t1") == "t2"
    assert await source.refresh("t1") == "t2"  # compare-and-swap: already replaced
    assert calls == ["fetch", "force"]


async def test_command_source(tmp_path: Path) -> None:
    counter = tmp_path / "n"
    script = (
        "import pathlib,sys; p=pathlib.Path(sys.argv[1]); "
        "n=int(p.read_text() if p.exists() else 0)+1; p.write_text(str(n)); print(f'cmd-{n}')"
    )
    source = CommandTokenSource([sys.executable, "-c", script, str(counter)])
    assert await source.token() == "cmd-1"
    assert await source.refresh("cmd-1") == "cmd-2"
    failing = CommandTokenSource([sys.executable, "-c", "import sys; sys.exit(3)"])
    with pytest.raises(TokenSourceError, match="status 3"):
        await failing.token()
    empty = CommandTokenSource([sys.executable, "-c", "pass"])
    with pytest.raises(TokenSourceError, match="no token"):
        await empty.token()
    # A command that hangs (reading a stdin that never ends would do too): the timeout ends it.
    slow = CommandTokenSource([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.2)
    with pytest.raises(TokenSourceError, match="no token within"):
        await slow.token()
    missing = CommandTokenSource([str(tmp_path / "does-not-exist")])
    with pytest.raises(TokenSourceError, match="cannot run"):
        await missing.token()


async def test_a_command_that_floods_its_output_is_stopped(tmp_path: Path) -> None:
    # A command printing without end: refused at the cap, and killed, not read to the end.
    pid_file = tmp_path / "pid"
    script = (
        "import os,sys,pathlib; pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))\n"
        "while True: sys.stdout.write('x' * 65536)"
    )
    flood = CommandTokenSource([sys.executable, "-c", script, str(pid_file)], timeout=30)
    with pytest.raises(TokenSourceError, match=f"printed more than {MAX_COMMAND_OUTPUT} bytes"):
        await flood.token()
    proc = Path("/proc", await asyncio.to_thread(pid_file.read_text))
    assert not await asyncio.to_thread(proc.exists)
    # Exactly at the cap is still a token (if an absurd one).
    at_cap = CommandTokenSource(
        [sys.executable, "-c", f"import sys; sys.stdout.write('y' * {MAX_COMMAND_OUTPUT})"]
    )
    assert await at_cap.token() == "y" * MAX_COMMAND_OUTPUT


async def test_closing_the_source_kills_a_command_still_running(tmp_path: Path) -> None:
    # The fetch is shared (single-flight), so a cancelled caller leaves it running for the
    # others, bounded by its timeout; closing the source (the proxy stopping) kills it.
    fifo = tmp_path / "pid"
    os.mkfifo(fifo)
    script = (
        "import os,sys,pathlib,time; pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))\n"
        "time.sleep(30)"
    )
    source = CommandTokenSource([sys.executable, "-c", script, str(fifo)], timeout=30)
    caller = asyncio.ensure_future(source.token())
    async with asyncio.timeout(10):
        proc = Path("/proc", await asyncio.to_thread(fifo.read_text))
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert await asyncio.to_thread(proc.exists)
    await source.aclose()
    assert not await asyncio.to_thread(proc.exists)


@pytest.fixture(params=["http", "https"])
async def real_as(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[FakeAuthorizationServer, FakeCA | None]]:
    ca = FakeCA() if request.param == "https" else None
    server = FakeAuthorizationServer(
        ssl_context=ca.server_ssl_context() if ca else None,
        policy=TokenPolicy(access_ttl=60),
    )
    async with server:
        yield server, ca
    if ca is not None:
        ca.close()


async def test_refresh_source_against_the_real_fake_as(
    real_as: tuple[FakeAuthorizationServer, FakeCA | None],
) -> None:
    server, ca = real_as
    pair = server.issue_tokens(resource=RESOURCE)
    source = RefreshTokenSource(
        server.token_endpoint,
        server.client_id,
        server.client_secret,
        refresh_token=pair.refresh_token,
        resource=RESOURCE,
        verify=ca.ca_path if ca else True,
    )
    try:
        first = await source.token()
        assert server.validate_access_token(first) is not None
        server.rotate()
        stale_results = await asyncio.gather(*(source.refresh(first) for _ in range(20)))
        assert len(set(stale_results)) == 1
        assert server.validate_access_token(stale_results[0]) is not None
        assert server.token_requests == 2
        server.revoke_family(stale_results[0])
        with pytest.raises(InvalidGrantError):
            await source.refresh(stale_results[0])
        with pytest.raises(InvalidGrantError):
            await source.token()
        assert server.token_requests == 3
    finally:
        await source.aclose()
    server.check()


async def test_a_seeded_access_token_is_used_until_it_is_stale_or_expired(
    core: OAuthCore, clock: ManualClock, router: respx.MockRouter
) -> None:
    pair = core.issue_tokens(resource=RESOURCE)
    source = _source(
        core,
        clock,
        refresh_token=pair.refresh_token,
        access_token=pair.access_token,
        expires_at=clock.time() + 60,
    )
    assert await source.token() == pair.access_token
    assert core.token_requests == 0

    fresh = await source.refresh(pair.access_token)
    assert fresh != pair.access_token
    assert core.token_requests == 1
    assert core.validate_access_token(fresh) is not None

    clock.advance(61)
    expired_replaced = await source.token()
    assert expired_replaced not in (fresh, pair.access_token)
    assert core.token_requests == 2
    await source.aclose()


async def test_current_if_newer_never_spends_a_grant(
    core: OAuthCore, clock: ManualClock, router: respx.MockRouter
) -> None:
    source = _source(core, clock)
    first = await source.token()
    assert core.token_requests == 1
    # Nothing newer than the current token, nothing in flight: None, and no grant.
    assert await source.current_if_newer(first) is None
    assert core.token_requests == 1
    second = await source.refresh(first)
    # A caller still holding the first token learns of the second without a grant.
    assert await source.current_if_newer(first) == second
    assert core.token_requests == 2
    # An expired current token is not "newer".
    clock.advance(61)
    assert await source.current_if_newer(first) is None
    assert core.token_requests == 2


async def test_current_if_newer_joins_a_fetch_in_flight(
    core: OAuthCore, clock: ManualClock, router: respx.MockRouter
) -> None:
    source = _source(core, clock)
    stale = await source.token()
    core.fail_next(1, status=200, error=None, delay=5)  # the next grant is answered late
    refreshing = asyncio.ensure_future(source.refresh(stale))
    await clock.wait_for_sleepers(1)
    joining = asyncio.ensure_future(source.current_if_newer(stale))
    clock.advance(5)
    fresh = await asyncio.wait_for(refreshing, 5)
    assert await asyncio.wait_for(joining, 5) == fresh != stale
    assert core.token_requests == 2


async def test_current_if_newer_is_none_when_the_fetch_fails_or_the_source_is_stuck(
    core: OAuthCore, clock: ManualClock, router: respx.MockRouter
) -> None:
    source = _source(core, clock, max_retries=0)
    stale = await source.token()
    core.fail_next(1, status=503, delay=5)
    refreshing = asyncio.ensure_future(source.refresh(stale))
    await clock.wait_for_sleepers(1)
    joining = asyncio.ensure_future(source.current_if_newer(stale))
    clock.advance(5)
    with pytest.raises(TokenSourceError):
        await asyncio.wait_for(refreshing, 5)
    assert await asyncio.wait_for(joining, 5) is None
    core.fail_next(1, status=400, error="invalid_grant")
    with pytest.raises(InvalidGrantError):
        await source.refresh(stale)
    assert await source.current_if_newer("anything") is None
    assert core.token_requests == 3


def test_tokens_outside_their_syntax_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="b64token"):
        StaticTokenSource("two words")
    with pytest.raises(ValueError, match="b64token"):
        StaticTokenSource("tok\r\nX-Injected: 1")
    with pytest.raises(ValueError, match="RFC 6749"):
        RefreshTokenSource(TOKEN_ENDPOINT, "c", refresh_token="rt\n2")
    with pytest.raises(ValueError, match="b64token"):
        RefreshTokenSource(TOKEN_ENDPOINT, "c", refresh_token="rt", access_token="a\x00b")
    source = RefreshTokenSource(TOKEN_ENDPOINT, "c", refresh_token="rt")
    with pytest.raises(ValueError, match="RFC 6749"):
        source.set_refresh_token("rt\r\n")


def test_plain_http_token_endpoints_off_loopback_need_an_opt_in() -> None:
    with pytest.raises(ValueError, match="plain http"):
        RefreshTokenSource("http://as.example/token", "c", refresh_token="rt")
    with pytest.raises(ValueError, match="plain http"):
        ClientCredentialsSource("http://as.example/token", "c", "s")
    RefreshTokenSource("http://as.example/token", "c", refresh_token="rt", allow_insecure_http=True)
    RefreshTokenSource("http://127.0.0.1:9/token", "c", refresh_token="rt")
    RefreshTokenSource("http://[::1]:9/token", "c", refresh_token="rt")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"deadline": 0}, "deadline"),
        ({"timeout": float("nan")}, "timeout"),
        ({"max_response_bytes": 0}, "max_response_bytes"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retry_wait": float("inf")}, "max_retry_wait"),
        ({"auth_method": "private_key_jwt"}, "auth_method"),
    ],
)
def test_token_endpoint_limits_are_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClientCredentialsSource(TOKEN_ENDPOINT, "c", "s", **kwargs)  # type: ignore[arg-type]


async def test_closing_any_source_stops_its_fetch_in_flight() -> None:
    # The shared fetch belongs to the base source: closing a callable source (or an OAuth one,
    # which closes its HTTP client after) stops a fetch nobody waits for any more.
    started, stopped = asyncio.Event(), asyncio.Event()

    async def fetch() -> str:
        started.set()
        try:
            await asyncio.Event().wait()  # an identity provider that never answers
        finally:
            stopped.set()
        raise AssertionError("unreachable")

    source = CallableTokenSource(fetch)
    caller = asyncio.ensure_future(source.token())
    async with asyncio.timeout(10):
        await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert not stopped.is_set()  # the shared fetch outlives its cancelled caller...
    await source.aclose()
    assert stopped.is_set()  # ...until the source is closed
