"""Bearer validation for the fake MCP server: in-process against the AS core, or by introspection."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from freshtoken.fakes._oauth_core import OAuthCore

__all__ = [
    "BearerCheck",
    "InProcessValidator",
    "IntrospectionValidator",
    "Validator",
]


@dataclass(frozen=True, slots=True)
class BearerCheck:
    """The verdict on one bearer: valid or not, why not, and the scopes it carries."""

    valid: bool
    reason: str = ""
    scopes: frozenset[str] = frozenset()


def _scopes(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list | tuple | set | frozenset):
        return frozenset(str(v) for v in value)
    return frozenset()


class Validator(Protocol):
    async def check(self, token: str) -> BearerCheck: ...


class InProcessValidator:
    """Ask the AS core directly (no socket): the default, and the fastest."""

    def __init__(self, core: OAuthCore) -> None:
        self._core = core

    async def check(self, token: str) -> BearerCheck:
        info = self._core.validate_access_token(token)
        if info is None:
            return BearerCheck(False, "invalid or expired token")
        return BearerCheck(True, scopes=_scopes(info.scope))


class IntrospectionValidator:
    """RFC 7662 introspection over real HTTP, authenticated as the AS's registered client."""

    def __init__(
        self,
        endpoint: str,
        client_id: str,
        client_secret: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._auth = httpx.BasicAuth(client_id, client_secret)
        self._verify: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(verify=self._verify, timeout=10.0)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def check(self, token: str) -> BearerCheck:
        if self._client is None:
            raise RuntimeError("introspection validator used before start()")
        response = await self._client.post(self._endpoint, data={"token": token}, auth=self._auth)
        if response.status_code != 200:
            return BearerCheck(False, f"introspection answered {response.status_code}")
        body = response.json()
        if not isinstance(body, dict) or body.get("active") is not True:
            return BearerCheck(False, "inactive token")
        return BearerCheck(True, scopes=_scopes(body.get("scope")))
