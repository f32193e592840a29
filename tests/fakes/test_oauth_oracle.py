"""What the fake authorization server saw: the record verdicts are computed from."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import pytest
from oauth_helpers import TRANSPORTS, OAuthHarness, oauth_harness, pkce_pair, redirect_params

from freshtoken import ManualClock, fingerprint
from freshtoken.fakes import (
    CoreRequest,
    FakeAuthorizationServer,
    OAuthCore,
    SeenTokenRequest,
    TokenPolicy,
)


@pytest.fixture(params=TRANSPORTS)
async def oauth(request: pytest.FixtureRequest) -> AsyncIterator[OAuthHarness]:
    async with oauth_harness(request.param) as harness:
        yield harness


async def test_every_token_request_is_seen_with_its_outcome(oauth: OAuthHarness) -> None:
    seed = oauth.core.issue_tokens()
    assert seed.refresh_token is not None
    start = oauth.clock.time()
    assert (await oauth.refresh(seed.refresh_token)).status_code == 200
    oauth.clock.advance(5)
    reused = await oauth.refresh(seed.refresh_token)
    assert reused.status_code == 400
    assert (await oauth.token({"grant_type": "client_credentials"})).status_code == 200
    oauth.core.fail_next(status=503)
    assert (await oauth.token({"grant_type": "client_credentials"})).status_code == 503
    oauth.core.fail_next(reset=True)
    with pytest.raises(httpx.TransportError):
        await oauth.refresh("never-issued")
    wrong_secret = await oauth.token(
        {"grant_type": "client_credentials"}, auth=oauth.basic(secret="wrong")
    )
    assert wrong_secret.status_code == 401

    client_id = oauth.core.client_id
    presented = fingerprint(seed.refresh_token)
    assert oauth.core.token_requests_seen() == [
        SeenTokenRequest("refresh_token", client_id, 200, None, presented, start),
        SeenTokenRequest("refresh_token", client_id, 400, "invalid_grant", presented, start + 5),
        SeenTokenRequest("client_credentials", client_id, 200, None, None, start + 5),
        SeenTokenRequest("client_credentials", client_id, 503, "fault", None, start + 5),
        SeenTokenRequest(
            "refresh_token", client_id, None, "fault", fingerprint("never-issued"), start + 5
        ),
        SeenTokenRequest("client_credentials", client_id, 401, "invalid_client", None, start + 5),
    ]
    refreshes = oauth.core.token_requests_seen("refresh_token")
    assert [r.status for r in refreshes] == [200, 400, None]
    assert oauth.core.token_requests_seen("authorization_code") == []
    # Raw refresh tokens never reach the record.
    assert seed.refresh_token not in repr(oauth.core.token_requests_seen())
    stats = oauth.core.stats()
    assert stats["token_requests_by_grant"] == {"refresh_token": 3, "client_credentials": 3}


async def test_a_request_without_a_readable_form_is_seen_without_a_grant(
    oauth: OAuthHarness,
) -> None:
    response = await oauth.client.post(
        oauth.base + "/token", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    (seen,) = oauth.core.token_requests_seen()
    assert (seen.grant_type, seen.status, seen.error) == (None, 400, "invalid_request")
    assert oauth.core.stats()["token_requests_by_grant"] == {"(none)": 1}


async def test_authorizations_seen_counts_codes_handed_out_only(oauth: OAuthHarness) -> None:
    redirect_uri = "http://127.0.0.1:9/cb"
    client = oauth.core.register_client(
        redirect_uris=[redirect_uri], token_endpoint_auth_method="none"
    )
    verifier, challenge = pkce_pair()
    query = {
        "response_type": "code",
        "client_id": client.client_id,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    refused = await oauth.client.get(oauth.base + "/authorize", params={**query, "scope": "x"})
    assert redirect_params(refused)["error"] == "invalid_scope"
    assert oauth.core.authorizations_seen() == 0
    granted = await oauth.client.get(oauth.base + "/authorize", params=query)
    code = redirect_params(granted)["code"]
    assert oauth.core.authorizations_seen() == 1
    exchange = await oauth.token(
        {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "client_id": client.client_id,
        },
        auth=None,
    )
    assert exchange.status_code == 200, exchange.text
    (seen,) = oauth.core.token_requests_seen("authorization_code")
    assert (seen.client_id, seen.status) == (client.client_id, 200)
    assert oauth.core.stats()["authorizations"] == 1


def test_the_record_is_bounded_and_the_counters_are_not() -> None:
    core = OAuthCore(max_seen=2)
    form = b"grant_type=client_credentials"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    for _ in range(5):
        request = CoreRequest(
            "POST",
            "/token",
            headers=headers,
            body=form + f"&client_id={core.client_id}&client_secret={core.client_secret}".encode(),
        )
        assert core.handle(request).status == 200
    assert len(core.token_requests_seen()) == 2
    assert core.stats()["token_requests_by_grant"] == {"client_credentials": 5}
    assert core.stats()["token_requests"] == 5


async def test_the_server_re_exposes_the_record() -> None:
    async with FakeAuthorizationServer() as server, httpx.AsyncClient() as client:
        response = await client.post(
            server.token_endpoint,
            data={"grant_type": "client_credentials"},
            auth=(server.client_id, server.client_secret),
        )
        assert response.status_code == 200
        assert [r.grant_type for r in server.token_requests_seen()] == ["client_credentials"]
        assert server.token_requests_seen("refresh_token") == []
        assert server.authorizations_seen() == 0
        server.check()


async def test_a_long_run_forgets_dead_tokens_and_keeps_the_live_ones() -> None:
    """Many refreshes on a small store: what can no longer be used is forgotten, oldest first;
    what still works stays, and counters keep counting everything."""
    clock = ManualClock()
    core = OAuthCore(clock=clock, keep_tokens=20, policy=TokenPolicy(access_ttl=5))
    pair = core.issue_tokens()
    refresh = pair.refresh_token
    issued = []
    for _ in range(200):
        clock.advance(1)
        answer = core.handle(_refresh_request(core, refresh))
        assert answer.status == 200
        refresh = json.loads(answer.body)["refresh_token"]
        issued.append(json.loads(answer.body)["access_token"])
    stats = core.stats()
    assert stats["access_tokens_issued"] == stats["refresh_tokens_issued"] == 201
    assert stats["access_tokens_held"] == stats["refresh_tokens_held"] == 20
    # Every access token still alive (5 s TTL, one refresh a second) works; older ones do not.
    assert all(core.validate_access_token(token) is not None for token in issued[-5:])
    assert core.validate_access_token(issued[-6]) is None
    assert core.handle(_refresh_request(core, refresh)).status == 200
    core.check()


def _refresh_request(core: OAuthCore, refresh_token: str) -> CoreRequest:
    credentials = base64.b64encode(f"{core.client_id}:{core.client_secret}".encode()).decode()
    return CoreRequest(
        method="POST",
        path="/token",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": f"Basic {credentials}",
        },
        body=urlencode({"grant_type": "refresh_token", "refresh_token": refresh_token}).encode(),
    )
