"""The respx adapter: the same core reached by httpx without sockets, alongside a real server."""

from __future__ import annotations

import httpx
import pytest
import respx

from freshtoken.fakes import FakeAuthorizationServer, OAuthCore, mount_respx


async def test_one_core_serves_sockets_and_respx_with_shared_state() -> None:
    core = OAuthCore()
    async with FakeAuthorizationServer(core=core) as server:
        assert core.issuer == server.url
        async with httpx.AsyncClient() as direct:
            response = await direct.post(
                server.token_endpoint,
                data={"grant_type": "client_credentials"},
                auth=(server.client_id, server.client_secret),
            )
        token = response.json()["access_token"]
        core.issuer = "https://as.example:8443"
        async with respx.mock() as router, httpx.AsyncClient() as mocked:
            route = mount_respx(router, core)
            introspected = await mocked.post(
                "https://as.example:8443/introspect",
                data={"token": token},
                auth=(core.client_id, core.client_secret),
            )
            metadata = await mocked.get(
                "https://as.example:8443/.well-known/oauth-authorization-server"
            )
        assert introspected.json()["active"] is True
        assert metadata.json()["token_endpoint"] == "https://as.example:8443/token"
        assert route.call_count == 2
        assert core.token_requests == 1


def test_a_sync_httpx_client_reaches_the_core() -> None:
    core = OAuthCore(issuer="http://as.example")
    pair = core.issue_tokens()
    with respx.mock() as router, httpx.Client() as client:
        mount_respx(router, core)
        response = client.post(
            "http://as.example/token",
            data={"grant_type": "refresh_token", "refresh_token": pair.refresh_token or ""},
            auth=(core.client_id, core.client_secret),
        )
        # Only the issuer's origin is routed.
        with pytest.raises(respx.models.AllMockedAssertionError):
            client.get("http://elsewhere.example/token")
    assert response.status_code == 200
    assert response.json()["refresh_token"] != pair.refresh_token
    assert core.token_requests == 1
