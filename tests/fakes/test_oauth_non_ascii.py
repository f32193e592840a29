"""Non-ASCII credentials are refused or accepted by the fake AS like any other, never with a 500."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from freshtoken.fakes import FakeAuthorizationServer


async def test_non_ascii_client_secret_authenticates_over_basic() -> None:
    async with FakeAuthorizationServer() as auth:
        client = auth.core.register_client(client_secret="sécret-ü")
        pair = auth.issue_tokens(client_id=client.client_id)
        form = {"grant_type": "refresh_token", "refresh_token": pair.refresh_token or ""}
        async with httpx.AsyncClient() as http:
            good = await http.post(
                auth.token_endpoint,
                data=form,
                auth=(quote(client.client_id, safe=""), quote("sécret-ü", safe="")),
            )
            wrong = await http.post(
                auth.token_endpoint,
                data=form,
                auth=(quote(client.client_id, safe=""), quote("sécret-ö", safe="")),
            )
    assert good.status_code == 200, good.text
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"


async def test_non_ascii_code_verifier_is_invalid_grant_not_500() -> None:
    async with FakeAuthorizationServer() as auth:
        client = auth.core.register_client(
            redirect_uris=["http://127.0.0.1:9/cb"], token_endpoint_auth_method="none"
        )
        async with httpx.AsyncClient() as http:
            authorize = await http.get(
                auth.authorization_endpoint,
                params={
                    "response_type": "code",
                    "client_id": client.client_id,
                    "redirect_uri": "http://127.0.0.1:9/cb",
                    "code_challenge": "é" * 43,
                    "code_challenge_method": "S256",
                    "state": "s",
                },
            )
            assert authorize.status_code == 302, authorize.text
            code = httpx.URL(authorize.headers["location"]).params["code"]
            token = await http.post(
                auth.token_endpoint,
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": "http://127.0.0.1:9/cb",
                    "client_id": client.client_id,
                    "code_verifier": "a" * 43,
                },
            )
    assert token.status_code == 400, token.text
    assert token.json()["error"] == "invalid_grant"
