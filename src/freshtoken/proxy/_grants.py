"""OAuth grants at a token endpoint: the refresh-token grant (RFC 6749 §6) with RFC 8707
``resource`` and its store, and the client-credentials grant (RFC 6749 §4.4). How they talk to
the endpoint — retries, bounds, token syntax, sanitized errors — is ``_endpoint.py``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from freshtoken._clock import Clock
from freshtoken._errors import GrantInDoubtError, InvalidGrantError, TokenSourceError
from freshtoken._timeline import Timeline, fingerprint
from freshtoken.proxy._endpoint import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_WAIT,
    DEFAULT_TIMEOUT,
    OAuthTokenSource,
)
from freshtoken.proxy._jwt import ClientKey
from freshtoken.proxy._store import StoredTokens, TokenStore
from freshtoken.proxy._tokens import FetchedToken, valid_access_token, valid_refresh_token

__all__ = ["ClientCredentialsSource", "RefreshTokenSource"]

log = logging.getLogger("freshtoken.proxy")


class RefreshTokenSource(OAuthTokenSource):
    """The OAuth refresh-token grant (RFC 6749 §6) with RFC 8707 ``resource``.

    Rotated refresh tokens are adopted and, with ``store``, persisted before the new access token
    is handed out (atomically, 0600, durably; see the README), together with the access token
    and its expiry, so a restart resumes with the newest refresh token and does not send an
    access token it knows has expired. ``invalid_grant``/``invalid_client`` and friends are
    terminal (:class:`~freshtoken.InvalidGrantError`). Connect errors, 5xx and 429 are retried
    ``max_retries`` times with jittered, capped exponential backoff on ``clock``, honouring
    ``Retry-After`` up to ``max_retry_wait``; a grant that may have been processed (read timeout,
    connection lost after the request was written) is never sent again
    (:class:`~freshtoken.GrantInDoubtError`, terminal) — unless the endpoint keeps a superseded
    refresh token valid for a while and ``refresh_grace`` says for how long (seconds): then it
    goes out once more within that window, which recovers an answer lost on the way.
    ``timeout`` bounds each network operation, ``deadline`` a whole request,
    ``max_response_bytes`` the answer.

    ``access_token`` (with ``expires_at`` on ``clock``, when known) seeds the source with the
    access token issued alongside ``refresh_token``, so the first request spends no grant; a
    ``store`` that already holds a token pair takes precedence, being newer. A source with an
    access token and no refresh token (an authorization server that issued none at login) uses
    the access token until it expires or is refused, then stops with a terminal
    :class:`~freshtoken.InvalidGrantError` asking for a new login.

    With ``auth_method="private_key_jwt"`` the client authenticates with a JWT signed by
    ``client_key`` (a :class:`~freshtoken.proxy.ClientKey`) for ``issuer``, the authorization
    server's issuer identifier, instead of a secret.

    A store rewritten by someone else — ``freshtoken login`` run again while the proxy serves —
    is adopted before the next grant would be spent (its tokens and its login record's client),
    and clears a terminal error: logging in again un-sticks a running proxy.
    """

    _resend_is_safe = False

    def __init__(
        self,
        token_endpoint: str,
        client_id: str,
        client_secret: str | None = None,
        *,
        refresh_token: str | None = None,
        access_token: str | None = None,
        expires_at: float | None = None,
        resource: str | None = None,
        scope: str | None = None,
        store: str | Path | None = None,
        clock: Clock | None = None,
        verify: ssl.SSLContext | str | Path | bool = True,
        timeline: Timeline | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float = DEFAULT_TIMEOUT,
        deadline: float = DEFAULT_DEADLINE,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        auth_method: str = "client_secret_basic",
        allow_insecure_http: bool = False,
        client_key: ClientKey | None = None,
        issuer: str | None = None,
        refresh_grace: float = 0.0,
    ) -> None:
        if (
            isinstance(refresh_grace, bool)
            or not isinstance(refresh_grace, int | float)
            or not 0 <= refresh_grace < math.inf
        ):
            raise ValueError(f"refresh_grace must be a finite number >= 0, got {refresh_grace!r}")
        self.refresh_grace = float(refresh_grace)
        super().__init__(
            token_endpoint=token_endpoint,
            client_id=client_id,
            client_secret=client_secret,
            scope=scope,
            resource=resource,
            clock=clock,
            verify=verify,
            timeline=timeline,
            max_retries=max_retries,
            timeout=timeout,
            deadline=deadline,
            max_response_bytes=max_response_bytes,
            max_retry_wait=max_retry_wait,
            auth_method=auth_method,
            allow_insecure_http=allow_insecure_http,
            client_key=client_key,
            issuer=issuer,
        )
        if refresh_token is not None and not valid_refresh_token(refresh_token):
            raise ValueError("refresh_token is not in RFC 6749 refresh-token syntax")
        if access_token is not None and not valid_access_token(access_token):
            raise ValueError("access_token is not an RFC 6750 b64token")
        self._store = TokenStore(store) if store is not None else None
        self._refresh_token = refresh_token
        self._current = access_token
        self._expires_at = expires_at if access_token is not None else None
        stored = self._store.open() if self._store is not None else None
        self._store_seen = self._store_signature()
        if stored is not None:
            self._refresh_token = stored.refresh_token
            self._current = stored.access_token
            self._expires_at = stored.expires_at
        if self._refresh_token is None and self._current is None:
            raise ValueError("RefreshTokenSource needs refresh_token or a store holding one")

    @property
    def store(self) -> Path | None:
        """The store file, if any."""
        return self._store.path if self._store is not None else None

    @property
    def refresh_token_fingerprint(self) -> str | None:
        """Fingerprint of the refresh token the next fetch will present."""
        return fingerprint(self._refresh_token)

    def set_refresh_token(self, refresh_token: str) -> None:
        """Reconfigure with a new refresh token (stored at once); clears a terminal error."""
        if not valid_refresh_token(refresh_token):
            raise ValueError("refresh_token is not in RFC 6749 refresh-token syntax")
        self.reset()
        self._refresh_token = refresh_token
        if self._store is not None:
            self._store.save(StoredTokens(refresh_token))
            self._store_seen = self._store_signature()

    async def token(self) -> str:
        if self.terminal_error is not None:
            await self._recover_from_store()
        return await super().token()

    async def refresh(self, stale: str | None) -> str:
        if self.terminal_error is not None:
            await self._recover_from_store()
        return await super().refresh(stale)

    async def _recover_from_store(self) -> None:
        # Stat only: a proxy stuck on a refused grant asks on every request.
        if self._store is not None and self._store_signature() != self._store_seen:
            self.reset()

    def _store_signature(self) -> tuple[int, int, int] | None:
        # Every save replaces the file (a new inode), so any write by anyone changes this.
        if self._store is None:
            return None
        try:
            stat = self._store.path.stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def _adopt_replaced_store(self) -> FetchedToken | None:
        """If someone else rewrote the store (a new login), take its tokens and client; return
        its access token when that is still good, so no grant is spent."""
        assert self._store is not None
        signature = self._store_signature()
        if signature is None or signature == self._store_seen:
            return None
        self._store_seen = signature
        try:
            stored = self._store.load()
        except TokenSourceError as exc:
            log.warning("%s; keeping the tokens held in memory", exc)
            return None
        if stored is None:
            return None
        login = self._store.login
        if login is not None and login.grant == "authorization_code":
            self.token_endpoint = login.token_endpoint
            self.client_id = login.client_id
            self._client_secret = login.client_secret
            self._auth_method = login.auth_method
            self.resource = login.resource
        self._refresh_token = stored.refresh_token
        self._record("store.adopted", refresh=fingerprint(stored.refresh_token))
        log.info("token store %s was replaced (a new login); using its tokens", self._store.path)
        access, expires_at = stored.access_token, stored.expires_at
        now = self.clock.time()
        if (
            access is None
            or access == self._current
            or (expires_at is not None and expires_at <= now)
        ):
            return None
        return FetchedToken(access, None if expires_at is None else expires_at - now)

    async def _fetch(self) -> FetchedToken:
        if self._store is not None:
            replaced = await asyncio.to_thread(self._adopt_replaced_store)
            if replaced is not None:
                return replaced
        if self._refresh_token is None:
            raise InvalidGrantError(
                f"token source {self._label()} holds no refresh token (the authorization server "
                "issued none) and its access token expired or was refused: log in again"
            )
        return await super()._fetch()

    def _may_resend_in_doubt(self, sent_at: float) -> bool:
        return self.clock.time() - sent_at < self.refresh_grace

    def _grant(self) -> dict[str, str]:
        assert self._refresh_token is not None
        return {"grant_type": "refresh_token", "refresh_token": self._refresh_token}

    def _held_secrets(self) -> list[str | None]:
        return [*super()._held_secrets(), self._refresh_token]

    async def _adopt(self, body: Mapping[str, Any], fetched: FetchedToken | None) -> None:
        rotated = body.get("refresh_token")
        if rotated is not None and rotated != self._refresh_token:
            if not valid_refresh_token(rotated):
                raise GrantInDoubtError(
                    f"token endpoint {self.token_endpoint} rotated the refresh token to one "
                    "outside RFC 6749 syntax; it is refused and the previous one is spent: "
                    "authorize again or set a new refresh token"
                )
            self._refresh_token = rotated
            self._record("refresh.rotated", refresh=fingerprint(rotated))
        if self._store is None:
            return
        expires_at = None
        if fetched is not None and fetched.expires_in is not None:
            expires_at = self.clock.time() + fetched.expires_in
        tokens = StoredTokens(
            self._refresh_token,
            fetched.access_token if fetched is not None else None,
            expires_at,
        )
        try:
            # Off the event loop: an fsync on a slow disk must not stall every other request.
            await asyncio.to_thread(self._store.save, tokens)
            self._store_seen = self._store_signature()
        except OSError as exc:
            # The rotated refresh token is still held in memory and keeps working until a restart;
            # failing the fetch would not save it, so say so loudly and go on.
            self._record("store.failed", error=exc.strerror or type(exc).__name__)
            log.error(
                "token store %s: cannot save the rotated refresh token (%s); it is kept in "
                "memory only and lost on restart",
                self._store.path,
                exc.strerror or exc,
            )


class ClientCredentialsSource(OAuthTokenSource):
    """The OAuth client-credentials grant (RFC 6749 §4.4): the same bounds and error rules as
    :class:`RefreshTokenSource`, except that a request whose outcome is unknown is retried too
    (a client-credentials grant consumes nothing). ``client_key`` and ``issuer``: as there."""

    def __init__(
        self,
        token_endpoint: str,
        client_id: str,
        client_secret: str | None,
        *,
        scope: str | None = None,
        resource: str | None = None,
        clock: Clock | None = None,
        verify: ssl.SSLContext | str | Path | bool = True,
        timeline: Timeline | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float = DEFAULT_TIMEOUT,
        deadline: float = DEFAULT_DEADLINE,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        auth_method: str = "client_secret_basic",
        allow_insecure_http: bool = False,
        client_key: ClientKey | None = None,
        issuer: str | None = None,
    ) -> None:
        super().__init__(
            token_endpoint=token_endpoint,
            client_id=client_id,
            client_secret=client_secret,
            scope=scope,
            resource=resource,
            clock=clock,
            verify=verify,
            timeline=timeline,
            max_retries=max_retries,
            timeout=timeout,
            deadline=deadline,
            max_response_bytes=max_response_bytes,
            max_retry_wait=max_retry_wait,
            auth_method=auth_method,
            allow_insecure_http=allow_insecure_http,
            client_key=client_key,
            issuer=issuer,
        )

    def _grant(self) -> dict[str, str]:
        return {"grant_type": "client_credentials"}
