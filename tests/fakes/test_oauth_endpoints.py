"""Every endpoint of the fake authorization server, over plain HTTP, TLS and respx."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from urllib.parse import quote_plus

import httpx
import pytest
from oauth_helpers import TRANSPORTS, OAuthHarness, oauth_harness, pkce_pair, redirect_params

from freshtoken import ServerSideError
from freshtoken.fakes import FakeAuthorizationServer


@pytest.fixture(params=TRANSPORTS)
async def oauth(request: pytest.FixtureRequest) -> AsyncIterator[OAuthHarness]:
    async with oauth_harness(request.param) as harness:
        yield harness


def assert_oauth_error(response: object, status: int, error: str) -> None:
    assert isinstance(response, httpx.Response)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["error"] == error
    assert isinstance(body["error_description"], str)


async def test_metadata_advertises_every_endpoint_under_the_issuer(oauth: OAuthHarness) -> None:
    response = await oauth.client.get(oauth.base + "/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    metadata = response.json()
    assert metadata["issuer"] == oauth.base
    for key, path in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("revocation_endpoint", "/revoke"),
        ("introspection_endpoint", "/introspect"),
        ("registration_endpoint", "/register"),
    ]:
        assert metadata[key] == oauth.base + path
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert set(metadata["grant_types_supported"]) == {
        "authorization_code",
        "client_credentials",
        "refresh_token",
    }
    assert "none" in metadata["token_endpoint_auth_methods_supported"]


async def test_client_credentials_with_basic_and_post_auth(oauth: OAuthHarness) -> None:
    basic = await oauth.token({"grant_type": "client_credentials", "scope": "read"})
    post = await oauth.token(
        {
            "grant_type": "client_credentials",
            "client_id": oauth.core.client_id,
            "client_secret": oauth.core.client_secret,
            "resource": "https://mcp.example/mcp",
        },
        auth=None,
    )
    for response in (basic, post):
        assert response.status_code == 200, response.text
        assert response.headers["Cache-Control"] == "no-store"
        body = response.json()
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 3600
        assert "refresh_token" not in body
    assert basic.json()["scope"] == "read"
    info = oauth.core.validate_access_token(post.json()["access_token"])
    assert info is not None
    assert info.client_id == oauth.core.client_id
    assert info.resource == "https://mcp.example/mcp"
    assert (await oauth.introspect(post.json()["access_token"]))["aud"] == "https://mcp.example/mcp"
    issued = oauth.timeline.select(actor="as", kind="token.issued")
    assert [e.detail["grant_type"] for e in issued] == ["client_credentials"] * 2
    requests = oauth.timeline.select(kind="token.request")
    assert [(e.status, e.detail["client_id"]) for e in requests] == [
        (200, oauth.core.client_id)
    ] * 2
    assert oauth.core.token_requests == 2


async def test_bad_client_secret_is_invalid_client(oauth: OAuthHarness) -> None:
    grant = {"grant_type": "client_credentials"}
    basic = await oauth.token(grant, auth=oauth.basic(secret="wrong"))
    assert_oauth_error(basic, 401, "invalid_client")
    assert basic.headers["WWW-Authenticate"].startswith("Basic")
    post = await oauth.token(
        {**grant, "client_id": oauth.core.client_id, "client_secret": "wrong"}, auth=None
    )
    assert_oauth_error(post, 401, "invalid_client")
    unknown = await oauth.token(grant, auth=oauth.basic(client_id="nobody"))
    assert_oauth_error(unknown, 401, "invalid_client")
    missing = await oauth.token(grant, auth=None)
    assert_oauth_error(missing, 401, "invalid_client")
    refused = oauth.timeline.select(kind="token.refused")
    assert [e.detail["error"] for e in refused] == ["invalid_client"] * 4
    assert "wrong" not in oauth.timeline.format()


async def test_malformed_requests_are_invalid_request(oauth: OAuthHarness) -> None:
    url = oauth.base + "/token"
    auth = oauth.basic()
    as_json = await oauth.client.post(url, json={"grant_type": "client_credentials"}, auth=auth)
    assert_oauth_error(as_json, 400, "invalid_request")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for body in (b"\xff\xfe=\x00", b"grant_type", b"grant_type=a&grant_type=b", b""):
        response = await oauth.client.post(url, content=body, headers=form, auth=auth)
        assert_oauth_error(response, 400, "invalid_request")
    both = await oauth.token(
        {"grant_type": "client_credentials", "client_secret": oauth.core.client_secret}
    )
    assert_oauth_error(both, 400, "invalid_request")
    wrong_method = await oauth.client.get(url)
    assert_oauth_error(wrong_method, 405, "invalid_request")
    assert wrong_method.headers["Allow"] == "POST"
    missing = await oauth.client.get(oauth.base + "/nowhere")
    assert missing.status_code == 404


async def test_unknown_grant_and_invalid_scope(oauth: OAuthHarness) -> None:
    unknown = await oauth.token({"grant_type": "password", "username": "u", "password": "p"})
    assert_oauth_error(unknown, 400, "unsupported_grant_type")
    scope = await oauth.token({"grant_type": "client_credentials", "scope": "read admin"})
    assert_oauth_error(scope, 400, "invalid_scope")
    no_refresh = await oauth.refresh("")
    assert_oauth_error(no_refresh, 400, "invalid_request")
    bogus = await oauth.refresh("not-a-token")
    assert_oauth_error(bogus, 400, "invalid_grant")


async def test_authorization_code_with_pkce_for_a_registered_public_client(
    oauth: OAuthHarness,
) -> None:
    redirect_uri = "http://127.0.0.1:9/callback"
    registered = await oauth.client.post(
        oauth.base + "/register",
        json={
            "redirect_uris": [redirect_uri],
            "token_endpoint_auth_method": "none",
            "client_name": "public app",
            "scope": "mcp read",
        },
    )
    assert registered.status_code == 201, registered.text
    client = registered.json()
    assert "client_secret" not in client
    assert client["grant_types"] == ["authorization_code", "refresh_token"]
    verifier, challenge = pkce_pair()
    authorize = await oauth.client.get(
        oauth.base + "/authorize",
        params={
            "response_type": "code",
            "client_id": client["client_id"],
            "redirect_uri": redirect_uri,
            "state": "xyz",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "scope": "mcp",
            "resource": "https://mcp.example/mcp",
        },
    )
    assert authorize.headers["Location"].startswith(redirect_uri + "?")
    params = redirect_params(authorize)
    assert params["state"] == "xyz"
    assert params["iss"] == oauth.base
    exchange = {
        "grant_type": "authorization_code",
        "code": params["code"],
        "redirect_uri": redirect_uri,
        "client_id": client["client_id"],
    }
    bad = await oauth.token({**exchange, "code_verifier": "x" * 43}, auth=None)
    assert_oauth_error(bad, 400, "invalid_grant")
    missing = await oauth.token(exchange, auth=None)
    assert_oauth_error(missing, 400, "invalid_request")
    good = await oauth.token({**exchange, "code_verifier": verifier}, auth=None)
    assert good.status_code == 200, good.text
    tokens = good.json()
    assert tokens["scope"] == "mcp"
    assert "refresh_token" in tokens
    info = oauth.core.validate_access_token(tokens["access_token"])
    assert info is not None
    assert (info.client_id, info.resource) == (client["client_id"], "https://mcp.example/mcp")
    refreshed = await oauth.token(
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": client["client_id"],
        },
        auth=None,
    )
    assert refreshed.status_code == 200, refreshed.text

    replay = await oauth.token({**exchange, "code_verifier": verifier}, auth=None)
    assert_oauth_error(replay, 400, "invalid_grant")
    # A replayed code revokes everything it produced (RFC 6749 §4.1.2).
    assert oauth.core.validate_access_token(refreshed.json()["access_token"]) is None


async def test_authorize_errors(oauth: OAuthHarness) -> None:
    client = oauth.core.register_client(
        redirect_uris=["http://127.0.0.1:9/cb"], token_endpoint_auth_method="none"
    )
    base = {"response_type": "code", "client_id": client.client_id}
    wrong_redirect = await oauth.client.get(
        oauth.base + "/authorize", params={**base, "redirect_uri": "http://evil.example/cb"}
    )
    # An unverified redirect URI is never redirected to.
    assert_oauth_error(wrong_redirect, 400, "invalid_request")
    no_pkce = await oauth.client.get(oauth.base + "/authorize", params={**base, "state": "s"})
    assert redirect_params(no_pkce) == {
        "error": "invalid_request",
        "error_description": "public clients must use PKCE (code_challenge)",
        "state": "s",
        "iss": oauth.base,
    }
    _, challenge = pkce_pair()
    plain = await oauth.client.get(
        oauth.base + "/authorize",
        params={**base, "code_challenge": challenge, "code_challenge_method": "plain"},
    )
    assert redirect_params(plain)["error"] == "invalid_request"
    scope = await oauth.client.get(
        oauth.base + "/authorize",
        params={**base, "code_challenge": challenge, "code_challenge_method": "S256", "scope": "x"},
    )
    assert redirect_params(scope)["error"] == "invalid_scope"
    token_type = await oauth.client.get(
        oauth.base + "/authorize", params={**base, "response_type": "token"}
    )
    assert redirect_params(token_type)["error"] == "unsupported_response_type"


async def test_confidential_client_code_flow_with_post_auth(oauth: OAuthHarness) -> None:
    client = oauth.core.register_client(token_endpoint_auth_method="client_secret_post")
    verifier, challenge = pkce_pair()
    redirect_uri = "https://app.example/cb?keep=1"
    authorize = await oauth.client.get(
        oauth.base + "/authorize",
        params={
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": redirect_uri,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    params = redirect_params(authorize)
    assert params["keep"] == "1"
    exchange = {
        "grant_type": "authorization_code",
        "code": params["code"],
        "code_verifier": verifier,
        "client_id": client.client_id,
        "client_secret": client.client_secret or "",
    }
    wrong_uri = await oauth.token(
        {**exchange, "redirect_uri": "https://app.example/other"}, auth=None
    )
    assert_oauth_error(wrong_uri, 400, "invalid_grant")
    good = await oauth.token({**exchange, "redirect_uri": redirect_uri}, auth=None)
    assert good.status_code == 200, good.text
    oauth.clock.advance(601)
    late = await oauth.client.get(
        oauth.base + "/authorize",
        params={
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": redirect_uri,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    late_code = redirect_params(late)["code"]
    oauth.clock.advance(601)
    expired = await oauth.token(
        {**exchange, "code": late_code, "redirect_uri": redirect_uri}, auth=None
    )
    assert_oauth_error(expired, 400, "invalid_grant")


async def test_revocation(oauth: OAuthHarness) -> None:
    first = oauth.core.issue_tokens()
    second = oauth.core.issue_tokens()
    assert first.refresh_token is not None
    url = oauth.base + "/revoke"
    revoke_access = await oauth.client.post(
        url,
        data={"token": first.access_token, "token_type_hint": "access_token"},
        auth=oauth.basic(),
    )
    assert revoke_access.status_code == 200
    assert oauth.core.validate_access_token(first.access_token) is None
    # Revoking an access token leaves its refresh token usable.
    assert (await oauth.refresh(first.refresh_token)).status_code == 200

    revoke_refresh = await oauth.client.post(
        url, data={"token": second.refresh_token or ""}, auth=oauth.basic()
    )
    assert revoke_refresh.status_code == 200
    assert oauth.core.validate_access_token(second.access_token) is None
    assert (await oauth.introspect(second.access_token)) == {"active": False}
    unknown = await oauth.client.post(url, data={"token": "never-issued"}, auth=oauth.basic())
    assert unknown.status_code == 200
    unauthenticated = await oauth.client.post(url, data={"token": second.access_token})
    assert_oauth_error(unauthenticated, 401, "invalid_client")
    other = oauth.core.register_client()
    foreign = await oauth.client.post(
        url,
        data={"token": first.access_token},
        auth=oauth.basic(other.client_id, other.client_secret),
    )
    assert_oauth_error(foreign, 400, "invalid_request")
    assert oauth.timeline.count(kind="token.revoked") == 2


async def test_introspection(oauth: OAuthHarness) -> None:
    pair = oauth.core.issue_tokens(scope="mcp read", resource="https://mcp.example/mcp")
    active = await oauth.introspect(pair.access_token)
    assert active["active"] is True
    assert active["client_id"] == oauth.core.client_id
    assert active["scope"] == "mcp read"
    assert active["aud"] == "https://mcp.example/mcp"
    assert active["iss"] == oauth.base
    assert active["exp"] == int(oauth.clock.time() + 3600)
    refresh = await oauth.introspect(pair.refresh_token or "")
    assert refresh["active"] is True
    assert await oauth.introspect("garbage") == {"active": False}
    oauth.clock.advance(3600)
    assert await oauth.introspect(pair.access_token) == {"active": False}
    anonymous = await oauth.client.post(
        oauth.base + "/introspect", data={"token": pair.access_token}
    )
    assert_oauth_error(anonymous, 401, "invalid_client")
    public = oauth.core.register_client(token_endpoint_auth_method="none")
    by_public = await oauth.client.post(
        oauth.base + "/introspect", data={"token": pair.access_token, "client_id": public.client_id}
    )
    assert_oauth_error(by_public, 401, "invalid_client")
    no_token = await oauth.client.post(oauth.base + "/introspect", data={}, auth=oauth.basic())
    assert_oauth_error(no_token, 400, "invalid_request")


async def test_registration_of_a_confidential_client_and_bad_metadata(oauth: OAuthHarness) -> None:
    url = oauth.base + "/register"
    created = await oauth.client.post(
        url,
        json={
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_post",
        },
    )
    assert created.status_code == 201, created.text
    client = created.json()
    assert client["client_secret_expires_at"] == 0
    assert client["client_id_issued_at"] == int(oauth.clock.time())
    use = await oauth.token(
        {
            "grant_type": "client_credentials",
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
        },
        auth=None,
    )
    assert use.status_code == 200, use.text
    not_allowed = await oauth.token(
        {"grant_type": "refresh_token", "refresh_token": "x"},
        auth=oauth.basic(client["client_id"], client["client_secret"]),
    )
    assert_oauth_error(not_allowed, 400, "unauthorized_client")

    for metadata, error in [
        ({"redirect_uris": "http://x/cb"}, "invalid_redirect_uri"),
        ({"redirect_uris": ["/relative"]}, "invalid_redirect_uri"),
        ({"grant_types": ["authorization_code"]}, "invalid_redirect_uri"),
        (
            {"grant_types": ["implicit"], "redirect_uris": ["http://x/cb"]},
            "invalid_client_metadata",
        ),
        (
            {"redirect_uris": ["http://x/cb"], "token_endpoint_auth_method": "private_key_jwt"},
            "invalid_client_metadata",
        ),
        ({"redirect_uris": ["http://x/cb"], "scope": "root"}, "invalid_client_metadata"),
        (["not", "an", "object"], "invalid_client_metadata"),
    ]:
        assert_oauth_error(await oauth.client.post(url, json=metadata), 400, error)
    not_json = await oauth.client.post(
        url, content=b"{", headers={"Content-Type": "application/json"}
    )
    assert_oauth_error(not_json, 400, "invalid_request")
    form = await oauth.client.post(url, data={"redirect_uris": "http://x/cb"})
    assert_oauth_error(form, 400, "invalid_request")


async def test_a_crashing_handler_answers_500_json_and_check_raises(
    oauth: OAuthHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom() -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(oauth.core, "metadata", boom)
    response = await oauth.client.get(oauth.base + "/.well-known/oauth-authorization-server")
    assert response.status_code == 500
    assert response.json()["error"] == "server_error"
    assert "kaboom" not in response.text
    with pytest.raises(ServerSideError, match="kaboom") as raised:
        oauth.core.check()
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert oauth.timeline.count(kind="server.error") == 1
    oauth.core.errors.clear()


async def test_server_attributes_and_passthroughs() -> None:
    async with FakeAuthorizationServer() as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.issuer == server.url
        assert server.metadata_url == server.url + "/.well-known/oauth-authorization-server"
        assert server.token_endpoint == server.url + "/token"
        assert server.authorization_endpoint == server.url + "/authorize"
        assert server.revocation_endpoint == server.url + "/revoke"
        assert server.introspection_endpoint == server.url + "/introspect"
        assert server.registration_endpoint == server.url + "/register"
        pair = server.issue_tokens(scope="read")
        assert server.validate_access_token(pair.access_token) is not None
        server.policy.access_ttl = 5
        assert server.issue_tokens().expires_in == 5
        server.rotate()
        assert server.validate_access_token(pair.access_token) is None
        assert server.token_requests == 0
        # The advertised credentials authenticate at the token endpoint, sent as RFC 6749
        # §2.3.1 says: each part form-urlencoded, then Basic-encoded.
        odd = server.register_client(client_id="id:with space", client_secret="s+cr/t%")
        async with httpx.AsyncClient() as client:
            for client_id, secret in [
                (server.client_id, server.client_secret),
                (odd.client_id, odd.client_secret or ""),
            ]:
                credentials = f"{quote_plus(client_id)}:{quote_plus(secret)}"
                basic = "Basic " + base64.b64encode(credentials.encode()).decode()
                granted = await client.post(
                    server.token_endpoint,
                    data={"grant_type": "client_credentials"},
                    headers={"Authorization": basic},
                )
                assert granted.status_code == 200, granted.text
                info = server.validate_access_token(granted.json()["access_token"])
                assert info is not None
                assert info.client_id == client_id
        assert server.token_requests == 2
        server.check()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url
