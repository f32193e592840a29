"""Token-endpoint faults and the HTTP control endpoints, over plain HTTP, TLS and respx."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from oauth_helpers import TRANSPORTS, OAuthHarness, oauth_harness

from freshtoken import ConfigError
from freshtoken.fakes import CoreRequest, OAuthCore

GRANT = {"grant_type": "client_credentials"}


@pytest.fixture(params=TRANSPORTS)
async def oauth(request: pytest.FixtureRequest) -> AsyncIterator[OAuthHarness]:
    async with oauth_harness(request.param) as harness:
        yield harness


async def test_n_shot_status_fault_counts_down_then_recovers(oauth: OAuthHarness) -> None:
    oauth.core.fail_next(2)
    assert oauth.core.faults_pending == 2
    for remaining in (1, 0):
        response = await oauth.token(GRANT)
        assert response.status_code == 503
        assert response.json() == {
            "error": "temporarily_unavailable",
            "error_description": "injected fault",
        }
        assert response.headers["Cache-Control"] == "no-store"
        assert oauth.core.faults_pending == remaining
    assert (await oauth.token(GRANT)).status_code == 200
    assert oauth.core.token_requests == 3
    faults = oauth.timeline.select(kind="fault")
    assert [(e.status, e.detail["what"]) for e in faults] == [(503, "status")] * 2
    statuses = [e.status for e in oauth.timeline.select(kind="token.request")]
    assert statuses == [503, 503, 200]
    # A faulted request never reaches the grant logic.
    assert oauth.timeline.count(kind="token.issued") == 1


async def test_faults_queue_in_order_and_error_none_gives_a_plain_body(
    oauth: OAuthHarness,
) -> None:
    oauth.core.fail_next(status=500, error="server_error")
    oauth.core.fail_next(status=502, error=None)
    first = await oauth.token(GRANT)
    assert (first.status_code, first.json()["error"]) == (500, "server_error")
    second = await oauth.token(GRANT)
    assert second.status_code == 502
    assert second.headers["Content-Type"].startswith("text/plain")
    assert (await oauth.token(GRANT)).status_code == 200


async def test_garbage_body_is_not_json(oauth: OAuthHarness) -> None:
    oauth.core.fail_next(status=200, garbage=True)
    response = await oauth.token(GRANT)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError, match=r"."):
        json.loads(response.content)
    assert oauth.timeline.select(kind="fault")[0].detail["what"] == "garbage"
    assert oauth.timeline.count(kind="token.issued") == 0


async def test_reset_drops_the_connection_then_recovers(oauth: OAuthHarness) -> None:
    oauth.core.fail_next(reset=True)
    with pytest.raises(httpx.TransportError):
        await oauth.token(GRANT)
    (event,) = oauth.timeline.select(kind="fault")
    assert event.detail["what"] == "reset"
    assert oauth.timeline.select(kind="token.request")[0].status is None
    assert (await oauth.token(GRANT)).status_code == 200
    assert oauth.core.token_requests == 2


async def test_a_lost_response_rotates_the_refresh_token_the_client_never_sees(
    oauth: OAuthHarness,
) -> None:
    pair = oauth.core.issue_tokens()
    oauth.core.fail_next(lose_response=True)
    with pytest.raises(httpx.TransportError):
        await oauth.refresh(pair.refresh_token)
    # The grant went through: a new pair was issued and the presented refresh token superseded.
    issued = oauth.timeline.select(kind="token.issued")
    assert [e.detail["grant_type"] for e in issued] == ["seed", "refresh_token"]
    (request,) = oauth.timeline.select(kind="token.request")
    assert request.status == 200
    assert oauth.timeline.select(kind="fault")[0].detail["what"] == "lost-response"
    (seen,) = oauth.core.token_requests_seen("refresh_token")
    assert (seen.status, seen.error) == (None, "fault")
    # Presenting the old refresh token again now looks like theft: the family is revoked.
    replay = await oauth.refresh(pair.refresh_token)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert oauth.core.validate_access_token(pair.access_token) is None


@pytest.mark.parametrize(("wait", "status"), [(10, 200), (31, 400)])
async def test_with_a_grace_window_the_lost_refresh_token_still_works(
    oauth: OAuthHarness, wait: float, status: int
) -> None:
    # Within the 30 s window the lost refresh token yields a pair; after it, it is a reuse.
    oauth.core.policy.update({"grace_period": 30})
    pair = oauth.core.issue_tokens()
    oauth.core.fail_next(lose_response=True)
    with pytest.raises(httpx.TransportError):
        await oauth.refresh(pair.refresh_token)
    oauth.clock.advance(wait)
    again = await oauth.refresh(pair.refresh_token)
    assert again.status_code == status
    if status == 200:
        assert oauth.core.validate_access_token(again.json()["access_token"]) is not None
    else:
        assert again.json()["error"] == "invalid_grant"


async def test_delay_waits_for_the_manual_clock(oauth: OAuthHarness) -> None:
    oauth.core.fail_next(delay=30)
    pending = asyncio.create_task(oauth.token(GRANT))
    await oauth.timeline.wait_for(lambda e: e.kind == "fault", timeout=5)
    await oauth.clock.wait_for_sleepers(1)
    oauth.clock.advance(29)
    assert oauth.clock.sleepers == 1
    assert not pending.done()
    oauth.clock.advance(1)
    response = await asyncio.wait_for(pending, 5)
    assert response.status_code == 503
    assert oauth.timeline.select(kind="fault")[0].detail["delay"] == 30


async def test_a_success_status_fault_only_delays_a_normal_answer(oauth: OAuthHarness) -> None:
    oauth.core.fail_next(status=200, delay=5)
    pending = asyncio.create_task(oauth.token(GRANT))
    await oauth.timeline.wait_for(lambda e: e.kind == "fault", timeout=5)
    await oauth.clock.wait_for_sleepers(1)
    assert not pending.done()
    oauth.clock.advance(5)
    response = await asyncio.wait_for(pending, 5)
    assert response.status_code == 200
    assert oauth.core.validate_access_token(response.json()["access_token"]) is not None
    assert oauth.timeline.select(kind="fault")[0].detail["what"] == "delay"


async def test_delayed_reset(oauth: OAuthHarness) -> None:
    oauth.core.fail_next(reset=True, delay=2)
    pending = asyncio.create_task(oauth.token(GRANT))
    await oauth.timeline.wait_for(lambda e: e.kind == "fault", timeout=5)
    await oauth.clock.wait_for_sleepers(1)
    oauth.clock.advance(2)
    with pytest.raises(httpx.TransportError):
        await asyncio.wait_for(pending, 5)


def test_fail_next_rejects_nonsense() -> None:
    core = OAuthCore()
    kwargs: dict[str, Any]
    for kwargs in ({"times": 0}, {"status": 99}, {"delay": -1.0}, {"delay": float("nan")}):
        with pytest.raises(ConfigError):
            core.fail_next(**kwargs)
    assert core.faults_pending == 0


async def test_control_rotate_expire_revoke_issue(oauth: OAuthHarness) -> None:
    issued = await oauth.control("POST", "issue", {"scope": "read", "resource": "https://r/mcp"})
    assert issued.status_code == 200
    pair = issued.json()
    assert pair["scope"] == "read"
    info = oauth.core.validate_access_token(pair["access_token"])
    assert info is not None
    assert info.resource == "https://r/mcp"

    assert (await oauth.control("POST", "rotate")).status_code == 200
    assert oauth.core.validate_access_token(pair["access_token"]) is None
    assert oauth.timeline.count(kind="tokens.rotated") == 1

    fresh = (await oauth.control("POST", "issue")).json()
    expire = await oauth.control("POST", "expire", {"token": fresh["access_token"]})
    assert expire.status_code == 200
    assert oauth.core.validate_access_token(fresh["access_token"]) is None

    revoke = await oauth.control("POST", "revoke", {"token": pair["refresh_token"]})
    assert revoke.status_code == 200
    assert (await oauth.refresh(pair["refresh_token"])).json()["error"] == "invalid_grant"

    unknown = await oauth.control("POST", "expire", {"token": "never-issued"})
    assert unknown.status_code == 404
    missing = await oauth.control("POST", "revoke", {})
    assert missing.status_code == 400


async def test_control_faults_policy_and_stats(oauth: OAuthHarness) -> None:
    faults = await oauth.control(
        "POST", "faults", {"times": 2, "status": 502, "error": "bad_gateway"}
    )
    assert faults.json() == {"faults_pending": 2}
    assert (await oauth.token(GRANT)).status_code == 502
    stats = (await oauth.control("GET", "stats")).json()
    assert stats["token_requests"] == 1
    assert stats["faults_pending"] == 1
    for bad in ({"times": 0}, {"bogus": True}, {"times": "x"}):
        assert (await oauth.control("POST", "faults", bad)).status_code == 400

    policy = (await oauth.control("GET", "policy")).json()
    assert policy == {
        "access_ttl": 3600.0,
        "report_expires_in": True,
        "rotate_refresh_tokens": True,
        "reuse_detection": True,
        "grace_period": 0.0,
    }
    changed = await oauth.control("POST", "policy", {"access_ttl": 7, "report_expires_in": False})
    assert changed.json()["access_ttl"] == 7.0
    assert oauth.core.policy.access_ttl == 7.0
    assert oauth.core.policy.report_expires_in is False
    bad_policy = await oauth.control("POST", "policy", {"access_ttl": "soon"})
    assert bad_policy.status_code == 400
    assert oauth.core.policy.access_ttl == 7.0


async def test_control_refuses_bad_methods_paths_bodies_and_foreign_hosts(
    oauth: OAuthHarness,
) -> None:
    assert (await oauth.control("GET", "rotate")).status_code == 405
    assert (await oauth.control("POST", "stats")).status_code == 405
    assert (await oauth.control("POST", "nothing")).status_code == 404
    not_json = await oauth.client.post(oauth.base + "/_freshtoken/expire", content=b"{nope")
    assert not_json.status_code == 400
    array = await oauth.control("POST", "issue", [1, 2])
    assert array.status_code == 400
    rebinding = await oauth.client.post(
        oauth.base + "/_freshtoken/rotate", headers={"Host": "evil.example"}
    )
    assert rebinding.status_code == 403
    assert oauth.timeline.count(kind="tokens.rotated") == 0


def test_the_core_answers_without_any_adapter() -> None:
    core = OAuthCore(issuer="http://127.0.0.1:1")
    response = core.handle(
        CoreRequest(
            "post",
            "/token",
            headers={"content-type": "application/x-www-form-urlencoded"},
            body=f"grant_type=client_credentials&client_id={core.client_id}"
            f"&client_secret={core.client_secret}".encode(),
        )
    )
    assert response.status == 200
    assert core.validate_access_token(response.json()["access_token"]) is not None
    stats = core.handle(CoreRequest("GET", "/_freshtoken/stats", headers={"Host": "127.0.0.1:1"}))
    assert stats.json()["token_requests"] == 1
