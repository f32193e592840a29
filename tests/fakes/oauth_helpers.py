"""Shared harness for the fake authorization server tests: one core, reached three ways."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import respx

from freshtoken import ManualClock, Timeline
from freshtoken.fakes import FakeAuthorizationServer, FakeCA, OAuthCore, TokenPolicy, mount_respx

TRANSPORTS = ["plain", "tls", "respx"]
SOCKETS = ["plain", "tls"]
RESPX_ISSUER = "https://as.freshtoken.test"


@dataclass
class OAuthHarness:
    """An httpx client wired to a fake AS over one transport, with the AS's clock and core."""

    transport: str
    core: OAuthCore
    clock: ManualClock
    client: httpx.AsyncClient
    base: str
    server: FakeAuthorizationServer | None = None

    @property
    def timeline(self) -> Timeline:
        return self.core.timeline

    def basic(self, client_id: str | None = None, secret: str | None = None) -> httpx.BasicAuth:
        return httpx.BasicAuth(client_id or self.core.client_id, secret or self.core.client_secret)

    async def token(
        self,
        data: Mapping[str, str],
        *,
        auth: httpx.BasicAuth | str | None = "default",
        **kwargs: Any,
    ) -> httpx.Response:
        """POST a form to the token endpoint, authenticating as the default client by default."""
        basic = self.basic() if auth == "default" else auth
        if isinstance(basic, httpx.BasicAuth):
            kwargs["auth"] = basic
        return await self.client.post(self.base + "/token", data=dict(data), **kwargs)

    async def refresh(self, refresh_token: str, **extra: str) -> httpx.Response:
        return await self.token(
            {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
        )

    async def introspect(self, token: str) -> dict[str, Any]:
        response = await self.client.post(
            self.base + "/introspect", data={"token": token}, auth=self.basic()
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def control(self, method: str, name: str, body: Any = None) -> httpx.Response:
        return await self.client.request(method, f"{self.base}/_freshtoken/{name}", json=body)


@asynccontextmanager
async def oauth_harness(
    transport: str, *, policy: TokenPolicy | None = None
) -> AsyncIterator[OAuthHarness]:
    clock = ManualClock()
    timeline = Timeline(clock)
    if transport == "respx":
        core = OAuthCore(issuer=RESPX_ISSUER, clock=clock, timeline=timeline, policy=policy)
        async with respx.mock(assert_all_called=False) as router, httpx.AsyncClient() as client:
            mount_respx(router, core)
            yield OAuthHarness(transport, core, clock, client, RESPX_ISSUER)
        core.check()
        return
    with FakeCA() as ca:
        tls = transport == "tls"
        server = FakeAuthorizationServer(
            clock=clock,
            timeline=timeline,
            policy=policy,
            ssl_context=ca.server_ssl_context() if tls else None,
        )
        verify = ca.client_ssl_context() if tls else True
        async with server, httpx.AsyncClient(verify=verify) as client:
            yield OAuthHarness(transport, server.core, clock, client, server.url, server)
        server.check()


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def redirect_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    return {k: v[0] for k, v in query.items()}
