"""``freshtoken.proxy.login`` against the fake authorization server, over real sockets.

Discovery variants (the challenge, the path-suffixed and the root well-known path, the OpenID
configuration fallback), client identities (dynamic registration remembered and reused, a
pre-registered client, each token-endpoint authentication method) and the refusals (state,
``iss``, resource and issuer mismatches, consent denied, no authorization server, registration
refused, a redirect that never comes). Verdicts come from what the fake AS saw.
"""

from __future__ import annotations

import json
import stat
import webbrowser
from pathlib import Path

import httpx
import pytest
from login_helpers import ResourceServer, tampering_browser

from freshtoken import SystemClock
from freshtoken.fakes import FakeAuthorizationServer, FakeCA, FakeMCPServer, OAuthCore
from freshtoken.proxy import LoginError, LoginFailure, LoginTarget, login, login_status

OPENID = "/.well-known/openid-configuration"


def _stored(store: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads(store.read_text())
    return data


async def test_login_over_tls_registers_a_client_and_stores_what_the_proxy_needs(
    tmp_path: Path,
) -> None:
    store = tmp_path / "state" / "github.json"
    with FakeCA() as ca:
        async with (
            FakeAuthorizationServer(ssl_context=ca.server_ssl_context()) as auth,
            FakeMCPServer(authorization_server=auth, ssl_context=ca.server_ssl_context()) as mcp,
        ):
            target = LoginTarget(
                url=mcp.url, store=store, server_verify=ca.ca_path, as_verify=ca.ca_path
            )
            result = await login(target, mode="headless", redirect_timeout=20)
            data = _stored(store)
            record = data["login"]
            assert isinstance(record, dict)
            # The challenge led to the metadata; the client registered with a loopback redirect.
            client = auth.core.client(record["client_id"])
            assert client is not None
            assert client.redirect_uris == (record["redirect_uri"],)
            assert record["redirect_uri"].startswith("http://127.0.0.1:")
            assert record["registration"] == "dynamic"
            assert record["token_endpoint"] == auth.token_endpoint
            assert record["issuer"] == auth.issuer
            assert record["revocation_endpoint"] == auth.revocation_endpoint
            assert record["resource"] == mcp.url
            # Scope per the MCP spec (the metadata's scopes_supported) plus offline_access,
            # which the authorization server lists (SEP-2207).
            assert record["scope"] == "mcp offline_access"
            info = auth.validate_access_token(str(data["access_token"]))
            assert info is not None
            assert (info.client_id, info.resource) == (record["client_id"], mcp.url)
            assert auth.authorizations_seen() == 1
            [exchange] = auth.token_requests_seen("authorization_code")
            assert exchange.status == 200
            assert isinstance(data["refresh_token"], str)
            assert stat.S_IMODE(store.stat().st_mode) == 0o600
            # Nothing printable holds a token or the client secret.
            printed = result.summary() + login_status(store).summary()
            for secret in (data["access_token"], data["refresh_token"], record["client_secret"]):
                assert str(secret) not in printed
            assert result.refresh_token is not None
            assert result.refresh_token in printed
            auth.check()


async def test_a_second_login_reuses_the_remembered_registration(tmp_path: Path) -> None:
    store = tmp_path / "s.json"
    async with (
        FakeAuthorizationServer() as auth,
        FakeMCPServer(authorization_server=auth) as mcp,
    ):
        target = LoginTarget(url=mcp.url, store=store)
        first = await login(target, mode="headless", redirect_timeout=20)
        clients = auth.core.stats()["clients"]
        second = await login(target, mode="headless", redirect_timeout=20)
        assert auth.core.stats()["clients"] == clients
        assert second.login.client_id == first.login.client_id
        assert second.login.redirect_uri == first.login.redirect_uri
        assert second.refresh_token != first.refresh_token
        assert auth.authorizations_seen() == 2


@pytest.mark.parametrize(
    ("prm_paths", "expected"),
    [
        (("header", "suffixed", "root"), "GET /custom/prm.json"),
        (("suffixed", "root"), "GET /.well-known/oauth-protected-resource/mcp"),
        (("root",), "GET /.well-known/oauth-protected-resource"),
    ],
    ids=["challenge", "path-suffixed", "root"],
)
async def test_discovery_finds_the_resource_metadata(
    tmp_path: Path, prm_paths: tuple[str, ...], expected: str
) -> None:
    async with (
        FakeAuthorizationServer() as auth,
        ResourceServer(auth.issuer, prm_paths=prm_paths) as server,
    ):
        if prm_paths == ("root",):
            server.resource = server.base  # metadata at the root describes the origin
        result = await login(
            LoginTarget(url=server.url, store=tmp_path / "s.json"),
            mode="headless",
            redirect_timeout=20,
        )
        metadata_requests = [s for s in server.seen if s.startswith("GET")]
        # The first place that has the metadata is the last one asked.
        assert metadata_requests[-1] == expected
        assert result.login.resource == (server.resource or server.url)
        info = auth.validate_access_token(str(_stored(tmp_path / "s.json")["access_token"]))
        assert info is not None
        assert info.resource == result.login.resource


async def test_discovery_falls_back_to_the_openid_configuration(tmp_path: Path) -> None:
    core = OAuthCore(clock=SystemClock(), metadata_paths=(OPENID,))
    async with (
        FakeAuthorizationServer(core=core) as auth,
        FakeMCPServer(authorization_server=auth) as mcp,
    ):
        result = await login(LoginTarget(url=mcp.url, store=tmp_path / "s.json"), mode="headless")
        assert result.login.issuer == auth.issuer
        assert auth.authorizations_seen() == 1


async def test_the_challenge_scope_wins_over_scopes_supported(tmp_path: Path) -> None:
    async with (
        FakeAuthorizationServer() as auth,
        ResourceServer(
            auth.issuer, challenge_scope="read", scopes_supported=["mcp", "write"]
        ) as server,
    ):
        result = await login(
            LoginTarget(url=server.url, store=tmp_path / "s.json"), mode="headless"
        )
        assert result.login.scope == "read offline_access"


async def test_a_pre_registered_client_registers_nothing(tmp_path: Path) -> None:
    async with (
        FakeAuthorizationServer() as auth,
        FakeMCPServer(authorization_server=auth) as mcp,
    ):
        clients = auth.core.stats()["clients"]
        result = await login(
            LoginTarget(
                url=mcp.url,
                store=tmp_path / "s.json",
                client_id=auth.client_id,
                client_secret=auth.client_secret,
            ),
            mode="headless",
        )
        assert auth.core.stats()["clients"] == clients
        assert result.login.registration == "pre-registered"
        [exchange] = auth.token_requests_seen("authorization_code")
        assert (exchange.client_id, exchange.status) == (auth.client_id, 200)


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post", "none"])
async def test_the_client_authenticates_as_the_server_allows(tmp_path: Path, method: str) -> None:
    # The fake refuses every other method at its token endpoint, so a 200 proves the method.
    core = OAuthCore(clock=SystemClock(), token_endpoint_auth_methods=(method,))
    async with (
        FakeAuthorizationServer(core=core) as auth,
        FakeMCPServer(authorization_server=auth) as mcp,
    ):
        result = await login(LoginTarget(url=mcp.url, store=tmp_path / "s.json"), mode="headless")
        assert result.login.auth_method == method
        client = auth.core.client(result.login.client_id)
        assert client is not None
        assert client.token_endpoint_auth_method == method
        assert (client.client_secret is None) == (method == "none")
        [exchange] = auth.token_requests_seen("authorization_code")
        assert exchange.status == 200


async def _refused(target: LoginTarget, failure: LoginFailure, match: str, **kwargs: object) -> str:
    with pytest.raises(LoginError, match=match) as info:
        await login(target, **kwargs)  # type: ignore[arg-type]
    assert info.value.failure is failure
    assert not target.store.exists()
    return str(info.value)


@pytest.mark.parametrize(
    ("tamper", "match"),
    [
        (lambda q: {**q, "state": "forged"}, "state does not match"),
        (lambda q: {k: v for k, v in q.items() if k != "state"}, "state does not match"),
        (lambda q: {**q, "iss": "https://evil.example"}, "not http://127.0.0.1:[0-9]+ \\(RFC 9207"),
        (lambda q: {k: v for k, v in q.items() if k != "iss"}, "has no iss"),
    ],
    ids=["state-forged", "state-missing", "iss-other", "iss-missing"],
)
async def test_a_redirect_with_the_wrong_state_or_iss_is_refused(
    tmp_path: Path, tamper: object, match: str
) -> None:
    async with (
        FakeAuthorizationServer() as auth,
        FakeMCPServer(authorization_server=auth) as mcp,
    ):
        await _refused(
            LoginTarget(url=mcp.url, store=tmp_path / "s.json"),
            LoginFailure.RESPONSE_MISMATCH,
            match,
            open_url=tampering_browser(tamper),  # type: ignore[arg-type]
            redirect_timeout=20,
        )
        assert auth.authorizations_seen() == 1
        assert auth.token_requests_seen("authorization_code") == []


async def test_consent_denied_is_one_line(tmp_path: Path) -> None:
    async with (
        FakeAuthorizationServer() as auth,
        FakeMCPServer(authorization_server=auth) as mcp,
    ):
        auth.core.deny_consent = True
        message = await _refused(
            LoginTarget(url=mcp.url, store=tmp_path / "s.json"),
            LoginFailure.CONSENT_DENIED,
            "refused: access_denied: the resource owner denied the request",
            mode="headless",
        )
        assert "\n" not in message


async def test_no_redirect_in_time_is_a_timeout(tmp_path: Path) -> None:
    async def person_who_never_answers(url: str) -> None:
        return None

    async with (
        FakeAuthorizationServer() as auth,
        FakeMCPServer(authorization_server=auth) as mcp,
    ):
        await _refused(
            LoginTarget(url=mcp.url, store=tmp_path / "s.json"),
            LoginFailure.REDIRECT_TIMEOUT,
            "no redirect reached the loopback listener within 0.2 s",
            open_url=person_who_never_answers,
            redirect_timeout=0.2,
        )


async def test_metadata_for_another_resource_is_refused(tmp_path: Path) -> None:
    async with FakeAuthorizationServer() as auth:
        async with ResourceServer(auth.issuer, resource="https://evil.example/mcp") as server:
            await _refused(
                LoginTarget(url=server.url, store=tmp_path / "s.json"),
                LoginFailure.NO_AUTHORIZATION_SERVER,
                "is for https://evil.example/mcp, not for",
                mode="headless",
            )
        assert auth.authorizations_seen() == 0


async def test_metadata_naming_another_issuer_is_refused(tmp_path: Path) -> None:
    async with FakeAuthorizationServer() as auth:
        # The resource lists the AS under a path; the AS's metadata names its root issuer.
        async with ResourceServer(f"{auth.issuer}/tenant1") as server:
            auth_metadata_at_tenant = f"{auth.url}/.well-known/oauth-authorization-server/tenant1"
            message = await _refused(
                LoginTarget(url=server.url, store=tmp_path / "s.json"),
                LoginFailure.NO_AUTHORIZATION_SERVER,
                "no metadata for http://127.0.0.1:[0-9]+/tenant1",
                mode="headless",
            )
            assert auth_metadata_at_tenant in message
        assert auth.authorizations_seen() == 0


async def test_a_server_that_asks_for_nothing_has_no_authorization_server(tmp_path: Path) -> None:
    async with ResourceServer("http://127.0.0.1:9", prm_paths=(), status=200) as server:
        await _refused(
            LoginTarget(url=server.url, store=tmp_path / "s.json"),
            LoginFailure.NO_AUTHORIZATION_SERVER,
            "answered HTTP 200 without a token and publishes no protected-resource metadata",
            mode="headless",
        )


@pytest.mark.parametrize(
    ("registration", "match"),
    [
        (
            True,
            "registration at .* refused: HTTP 400 \\(invalid_client_metadata: registration closed\\)",
        ),
        (False, "offers no dynamic client registration and no client is configured"),
    ],
    ids=["refused", "not-offered"],
)
async def test_no_client_identity_is_its_own_failure(
    tmp_path: Path, registration: bool, match: str
) -> None:
    async with ResourceServer("", as_metadata={}) as server:
        server.authorization_server = server.base
        if registration:
            server.as_metadata = {"registration_endpoint": f"{server.base}/register"}
        await _refused(
            LoginTarget(url=server.url, store=tmp_path / "s.json"),
            LoginFailure.REGISTRATION_REFUSED,
            match,
            mode="headless",
        )
        assert "GET /authorize" not in server.seen


async def test_metadata_without_pkce_is_refused(tmp_path: Path) -> None:
    async with ResourceServer(
        "", as_metadata={"code_challenge_methods_supported": ["plain"]}
    ) as server:
        server.authorization_server = server.base
        await _refused(
            LoginTarget(url=server.url, store=tmp_path / "s.json"),
            LoginFailure.NO_AUTHORIZATION_SERVER,
            "does not advertise PKCE S256",
            mode="headless",
        )


async def test_browser_mode_opens_the_authorization_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []

    def browser(url: str) -> bool:
        # The system browser, played by a synchronous client (webbrowser.open runs in a thread).
        opened.append(url)
        httpx.get(url, follow_redirects=True).raise_for_status()
        return True

    monkeypatch.setattr(webbrowser, "open", browser)
    announced: list[str] = []
    async with (
        FakeAuthorizationServer() as auth,
        FakeMCPServer(authorization_server=auth) as mcp,
    ):
        await login(
            LoginTarget(url=mcp.url, store=tmp_path / "s.json"),
            announce=announced.append,
            redirect_timeout=20,
        )
        [url] = opened
        assert url.startswith(auth.authorization_endpoint + "?")
        assert announced == [
            "Opening the browser to authorize freshtoken. If it does not open, visit:\n" + url
        ]
        assert auth.authorizations_seen() == 1
