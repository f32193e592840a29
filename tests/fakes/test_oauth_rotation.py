"""Token policy: refresh-token rotation, reuse detection, grace window, expiry, controls."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from oauth_helpers import TRANSPORTS, OAuthHarness, oauth_harness

from freshtoken import ConfigError, fingerprint
from freshtoken.fakes import TokenPolicy


@pytest.fixture(params=TRANSPORTS)
async def oauth(request: pytest.FixtureRequest) -> AsyncIterator[OAuthHarness]:
    async with oauth_harness(request.param) as harness:
        yield harness


def refresh_token_of(response: object) -> str:
    import httpx

    assert isinstance(response, httpx.Response)
    assert response.status_code == 200, response.text
    token = response.json()["refresh_token"]
    assert isinstance(token, str)
    return token


async def test_replaying_a_rotated_refresh_token_revokes_the_whole_family(
    oauth: OAuthHarness,
) -> None:
    seed = oauth.core.issue_tokens()
    token_a = seed.refresh_token
    assert token_a is not None
    first = await oauth.refresh(token_a)
    token_b = refresh_token_of(first)
    access_b = first.json()["access_token"]
    assert token_b != token_a
    assert (await oauth.introspect(access_b))["active"] is True

    replay = await oauth.refresh(token_a)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"

    after = await oauth.refresh(token_b)
    assert after.status_code == 400
    assert after.json()["error"] == "invalid_grant"
    assert await oauth.introspect(access_b) == {"active": False}
    assert await oauth.introspect(seed.access_token) == {"active": False}
    assert oauth.core.validate_access_token(access_b) is None

    kinds = [e.kind for e in oauth.timeline.select(actor="as")]
    reuse = kinds.index("refresh.reuse")
    assert kinds[reuse + 1] == "family.revoked"
    (rotated,) = oauth.timeline.select(kind="refresh.rotated")
    assert rotated.token == fingerprint(token_a)
    assert rotated.detail["successor"] == fingerprint(token_b)
    (revoked,) = oauth.timeline.select(kind="family.revoked")
    assert revoked.detail["family"] == rotated.detail["family"]
    assert revoked.detail["reason"] == "reuse"
    issued = oauth.timeline.select(kind="token.issued")
    assert issued[-1].token == fingerprint(access_b)
    assert issued[-1].detail["refresh"] == fingerprint(token_b)
    assert token_a not in oauth.timeline.format()
    assert token_b not in oauth.timeline.format()


async def test_without_reuse_detection_a_replay_is_refused_but_the_family_survives(
    oauth: OAuthHarness,
) -> None:
    oauth.core.policy.reuse_detection = False
    token_a = oauth.core.issue_tokens().refresh_token or ""
    token_b = refresh_token_of(await oauth.refresh(token_a))
    replay = await oauth.refresh(token_a)
    assert replay.json()["error"] == "invalid_grant"
    assert (await oauth.refresh(token_b)).status_code == 200
    assert oauth.timeline.count(kind="family.revoked") == 0


async def test_without_rotation_the_refresh_token_is_reused_and_not_returned(
    oauth: OAuthHarness,
) -> None:
    oauth.core.policy.rotate_refresh_tokens = False
    token = oauth.core.issue_tokens().refresh_token or ""
    for _ in range(3):
        response = await oauth.refresh(token)
        assert response.status_code == 200, response.text
        assert "refresh_token" not in response.json()
    assert oauth.timeline.count(kind="refresh.rotated") == 0


async def test_grace_window_accepts_a_recent_replay_then_detects_reuse(
    oauth: OAuthHarness,
) -> None:
    oauth.core.policy.grace_period = 10
    token_a = oauth.core.issue_tokens().refresh_token or ""
    token_b = refresh_token_of(await oauth.refresh(token_a))
    oauth.clock.advance(9.5)
    in_grace = await oauth.refresh(token_a)
    token_c = refresh_token_of(in_grace)
    assert token_c not in (token_a, token_b)
    assert oauth.timeline.count(kind="refresh.grace") == 1
    # Both successors stay valid: concurrent refreshers each keep a working chain.
    assert (await oauth.introspect(token_b))["active"] is True

    oauth.clock.advance(0.5)
    late = await oauth.refresh(token_a)
    assert late.json()["error"] == "invalid_grant"
    assert oauth.timeline.count(kind="refresh.reuse") == 1
    assert (await oauth.refresh(token_c)).json()["error"] == "invalid_grant"


async def test_access_tokens_expire_by_the_clock(oauth: OAuthHarness) -> None:
    oauth.core.policy.access_ttl = 30
    response = await oauth.token({"grant_type": "client_credentials"})
    assert response.json()["expires_in"] == 30
    access = response.json()["access_token"]
    oauth.clock.advance(29.5)
    assert oauth.core.validate_access_token(access) is not None
    oauth.clock.advance(0.5)
    assert oauth.core.validate_access_token(access) is None
    assert await oauth.introspect(access) == {"active": False}


async def test_report_expires_in_false_omits_it(oauth: OAuthHarness) -> None:
    oauth.core.policy.report_expires_in = False
    oauth.core.policy.access_ttl = 60
    body = (await oauth.token({"grant_type": "client_credentials"})).json()
    assert "expires_in" not in body
    info = oauth.core.validate_access_token(body["access_token"])
    assert info is not None
    assert info.expires_at == oauth.clock.time() + 60
    assert oauth.core.issue_tokens().expires_in is None


async def test_rotate_invalidates_access_tokens_but_not_refresh_tokens(
    oauth: OAuthHarness,
) -> None:
    pairs = [oauth.core.issue_tokens() for _ in range(3)]
    oauth.core.rotate()
    for pair in pairs:
        assert oauth.core.validate_access_token(pair.access_token) is None
    (event,) = oauth.timeline.select(kind="tokens.rotated")
    assert event.detail["count"] == 3
    fresh = await oauth.refresh(pairs[0].refresh_token or "")
    assert oauth.core.validate_access_token(fresh.json()["access_token"]) is not None


async def test_expire_and_revoke_family_controls(oauth: OAuthHarness) -> None:
    pair = oauth.core.issue_tokens()
    other = oauth.core.issue_tokens()
    oauth.core.expire(pair.access_token)
    assert oauth.core.validate_access_token(pair.access_token) is None
    oauth.core.expire(pair.refresh_token or "")
    assert (await oauth.refresh(pair.refresh_token or "")).json()["error"] == "invalid_grant"
    assert [e.detail["type"] for e in oauth.timeline.select(kind="token.expired")] == [
        "access",
        "refresh",
    ]
    oauth.core.revoke_family(other.refresh_token or "")
    assert oauth.core.validate_access_token(other.access_token) is None
    assert (await oauth.refresh(other.refresh_token or "")).json()["error"] == "invalid_grant"
    with pytest.raises(ConfigError, match="unknown token"):
        oauth.core.expire("never-issued")
    with pytest.raises(ConfigError, match="unknown token"):
        oauth.core.revoke_family("never-issued")


async def test_refresh_keeps_resource_and_may_narrow_scope(oauth: OAuthHarness) -> None:
    pair = oauth.core.issue_tokens(scope="mcp read", resource="https://mcp.example/mcp")
    narrowed = await oauth.refresh(pair.refresh_token or "", scope="read")
    assert narrowed.json()["scope"] == "read"
    info = oauth.core.validate_access_token(narrowed.json()["access_token"])
    assert info is not None
    assert info.resource == "https://mcp.example/mcp"
    token = narrowed.json()["refresh_token"]
    wider = await oauth.refresh(token, scope="mcp write")
    assert wider.json()["error"] == "invalid_scope"
    other = await oauth.refresh(token, resource="https://other.example/mcp")
    assert other.json()["error"] == "invalid_target"


async def test_another_clients_refresh_token_is_invalid_grant(oauth: OAuthHarness) -> None:
    other = oauth.core.register_client()
    pair = oauth.core.issue_tokens(other.client_id)
    response = await oauth.refresh(pair.refresh_token or "")
    assert response.json()["error"] == "invalid_grant"


def test_policy_updates_are_type_checked() -> None:
    policy = TokenPolicy()
    policy.update({"access_ttl": 5, "rotate_refresh_tokens": False})
    assert policy.access_ttl == 5.0
    assert isinstance(policy.access_ttl, float)
    assert policy.rotate_refresh_tokens is False
    for bad in (
        {"access_ttl": "5"},
        {"access_ttl": -1},
        {"access_ttl": float("inf")},
        {"reuse_detection": 1},
        {"grace_period": True},
        {"nonsense": 1},
    ):
        with pytest.raises(ConfigError):
            policy.update(bad)
    assert policy.to_json()["access_ttl"] == 5.0
