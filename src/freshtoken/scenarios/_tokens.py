"""Client-side token handling for the reference subjects, each with its deliberate flaw.

These talk to the fake authorization server's token endpoint themselves (no proxy), the way an
MCP client library does. Each strategy is an :class:`~freshtoken.scenarios._client.ClientAuth`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from freshtoken._timeline import Timeline
from freshtoken.scenarios._client import Exchange

__all__ = [
    "BakedBearer",
    "Credentials",
    "NoSingleFlight",
    "RefreshOn401Only",
    "RefreshOn403",
    "RetryForever",
    "SubstringMatch",
    "says_auth_failed",
]

RETRY_FOREVER_CAP = 6
"""``retry-forever`` gives up after this many sends, so a scenario run can never hang on it."""


@dataclass
class Credentials:
    """What an OAuth client holds: a bearer, a refresh token, and how to reach the token endpoint."""

    token_endpoint: str
    client_id: str
    client_secret: str
    access_token: str
    refresh_token: str | None
    verify: Any = True


# The reference clients' own idea of an auth failure, written apart from the proxy's matcher
# so the kill matrix is an independent check of it: the error codes and phrases the fakes and
# the real servers in the catalogue use, read from parsed fields only.
_AUTH_CODES: Final = frozenset(
    {"authentication_failed", "invalid_token", "unauthorized", "unauthenticated", "token_expired"}
)
_AUTH_PHRASE: Final = re.compile(
    r"authentication[ _]failed|invalid[ _]token|unauthori[sz]ed|token[ _]expired", re.IGNORECASE
)


def _is_auth_code(value: Any) -> bool:
    return isinstance(value, str) and value.lower() in _AUTH_CODES


def says_auth_failed(message: Any) -> bool:
    """Whether one parsed JSON body or JSON-RPC message reports a refused bearer: an ``error``
    with an auth code (as its ``code`` or in its ``data``) or an auth phrase in its message, or
    a ``tools/call`` result with ``isError`` whose text has an auth phrase."""
    if not isinstance(message, Mapping):
        return False
    error = message.get("error")
    if isinstance(error, Mapping):
        data = error.get("data")
        return (
            _is_auth_code(error.get("code"))
            or (isinstance(data, Mapping) and _is_auth_code(data.get("error")))
            or (
                isinstance(error.get("message"), str)
                and bool(_AUTH_PHRASE.search(error["message"]))
            )
        )
    result = message.get("result")
    if isinstance(result, Mapping) and result.get("isError") is True:
        content = result.get("content")
        return isinstance(content, list) and any(
            isinstance(item, Mapping)
            and isinstance(item.get("text"), str)
            and bool(_AUTH_PHRASE.search(item["text"]))
            for item in content
        )
    return False


def _auth_failed_in_body(exchange: Exchange) -> bool:
    """The correct rule: parsed JSON (or the first SSE JSON-RPC message) says auth failed."""
    if exchange.status != 200:
        return False
    if exchange.is_sse:
        first = next((m for m in exchange.messages if "method" not in m), None)
        return first is not None and says_auth_failed(first)
    return bool(exchange.messages) and says_auth_failed(exchange.messages[0])


class _Refreshing:
    """A bearer plus a refresh-token grant; single-flight and compare-and-swap unless told not to."""

    def __init__(self, credentials: Credentials, timeline: Timeline, *, actor: str) -> None:
        self.credentials = credentials
        self.timeline = timeline
        self.actor = actor
        self._lock = asyncio.Lock()
        self._http = httpx.AsyncClient(verify=credentials.verify, timeout=10.0)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def authorization(self) -> str | None:
        return f"Bearer {self.credentials.access_token}"

    async def refresh_single_flight(self, stale: str | None) -> None:
        async with self._lock:
            if stale is not None and f"Bearer {self.credentials.access_token}" != stale:
                return
            await self.refresh_with(self.credentials.refresh_token)

    async def refresh_with(self, refresh_token: str | None) -> None:
        if refresh_token is None:
            return
        creds = self.credentials
        self.timeline.record(self.actor, "refresh.request", token=refresh_token)
        try:
            response = await self._http.post(
                creds.token_endpoint,
                data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                auth=(creds.client_id, creds.client_secret),
            )
        except httpx.HTTPError as exc:
            self.timeline.record(self.actor, "refresh.failed", error=type(exc).__name__)
            return
        try:
            body = response.json()
        except (ValueError, json.JSONDecodeError):
            body = {}
        if response.status_code != 200 or not isinstance(body, dict):
            self.timeline.record(
                self.actor,
                "refresh.failed",
                status=response.status_code,
                error=body.get("error") if isinstance(body, dict) else None,
            )
            return
        creds.access_token = str(body.get("access_token", creds.access_token))
        if body.get("refresh_token"):
            creds.refresh_token = str(body["refresh_token"])
        self.timeline.record(self.actor, "refresh.done", token=creds.access_token)


class BakedBearer(_Refreshing):
    """The seed's bug: the ``Authorization`` header is fixed when the transport is built."""

    def __init__(self, credentials: Credentials, timeline: Timeline, *, actor: str) -> None:
        super().__init__(credentials, timeline, actor=actor)
        self._baked = f"Bearer {credentials.access_token}"

    async def authorization(self) -> str | None:
        return self._baked

    async def should_retry(self, exchange: Exchange, attempt: int, sent: str | None) -> bool:
        return False


class RefreshOn401Only(_Refreshing):
    """Refreshes and retries once on HTTP 401, and never looks at a 200 body or SSE event."""

    async def should_retry(self, exchange: Exchange, attempt: int, sent: str | None) -> bool:
        if attempt > 1 or exchange.status != 401:
            return False
        await self.refresh_single_flight(sent)
        return True


class NoSingleFlight(_Refreshing):
    """Detects every auth failure, but each failing call refreshes by itself with the refresh
    token that went with the bearer it sent: concurrent failures present one rotating refresh
    token many times."""

    def __init__(self, credentials: Credentials, timeline: Timeline, *, actor: str) -> None:
        super().__init__(credentials, timeline, actor=actor)
        self._paired: dict[str | None, str | None] = {}

    async def should_retry(self, exchange: Exchange, attempt: int, sent: str | None) -> bool:
        if attempt > 1 or not (exchange.status == 401 or _auth_failed_in_body(exchange)):
            return False
        await self.refresh_with(self._paired.get(sent, self.credentials.refresh_token))
        return True

    async def authorization(self) -> str | None:
        header = f"Bearer {self.credentials.access_token}"
        self._paired.setdefault(header, self.credentials.refresh_token)
        return header


class RetryForever(_Refreshing):
    """Refreshes and resends on anything that looks like a rejection (401, 400, 403, 404, auth
    body), with no one-replay limit (capped at :data:`RETRY_FOREVER_CAP` sends)."""

    async def should_retry(self, exchange: Exchange, attempt: int, sent: str | None) -> bool:
        rejected = exchange.status in (400, 401, 403, 404) or _auth_failed_in_body(exchange)
        if not rejected or attempt >= RETRY_FOREVER_CAP:
            return False
        await self.refresh_single_flight(sent)
        return True


class SubstringMatch(_Refreshing):
    """Looks for ``authentication_failed`` anywhere in the raw body instead of parsing it."""

    async def should_retry(self, exchange: Exchange, attempt: int, sent: str | None) -> bool:
        if attempt > 1:
            return False
        if exchange.status != 401 and b"authentication_failed" not in exchange.body:
            return False
        await self.refresh_single_flight(sent)
        return True


class RefreshOn403(_Refreshing):
    """Detects auth failures correctly, but also treats 403 (insufficient scope) as one."""

    async def should_retry(self, exchange: Exchange, attempt: int, sent: str | None) -> bool:
        failed = exchange.status in (401, 403) or _auth_failed_in_body(exchange)
        if attempt > 1 or not failed:
            return False
        await self.refresh_single_flight(sent)
        return True
