"""The fake authorization server's token store: clients, codes, token families, their lifetimes.

Not thread-safe on its own: :class:`~freshtoken.fakes.OAuthCore` holds its lock around every use.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from freshtoken._clock import Clock
from freshtoken._errors import ConfigError
from freshtoken._timeline import fingerprint
from freshtoken.fakes._oauth_jwt import check_public_key
from freshtoken.fakes._oauth_models import (
    AUTH_METHODS,
    GRANT_TYPES,
    ClientRecord,
    Recorder,
    TokenInfo,
    TokenPair,
    TokenPolicy,
)

__all__ = ["KEEP_TOKENS", "Access", "Code", "Family", "Refresh", "TokenStore", "UnknownTokenError"]


class UnknownTokenError(ConfigError):
    """A control named a token this server never issued."""


@dataclass
class Family:
    """Every token descended from one grant; revoking it revokes them all."""

    id: str
    client_id: str
    revoked: bool = False


@dataclass
class Access:
    family: Family
    scope: str | None
    resource: str | None
    issued_at: float
    expires_at: float
    revoked: bool = False


@dataclass
class Refresh:
    family: Family
    scope: str | None
    resource: str | None
    issued_at: float
    superseded_at: float | None = None
    expired: bool = False


@dataclass
class Code:
    client_id: str
    redirect_uri: str | None
    code_challenge: str | None
    scope: str | None
    resource: str | None
    expires_at: float
    family: Family | None = None


_T = TypeVar("_T")

KEEP_TOKENS: Final = 10_000
"""Tokens of each kind a store holds before it forgets the oldest that can no longer be used."""


class TokenStore:
    """What the server has issued, and the rules that say whether it is still good.

    A long run stays small: past ``keep`` access tokens, the oldest dead ones (expired, rotated,
    revoked) are forgotten — a forgotten token is refused exactly as a dead one is. Past ``keep``
    refresh tokens, the oldest that can no longer be used are forgotten too; one of those
    presented again is then an unknown token (``invalid_grant``) rather than a detected reuse.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        policy: Callable[[], TokenPolicy],
        recorder: Recorder,
        keep: int = KEEP_TOKENS,
    ) -> None:
        self._keep = keep
        self._clock = clock
        # A callable: the core's policy may be replaced while the server runs.
        self._policy = policy
        self._recorder = recorder
        self.clients: dict[str, ClientRecord] = {}
        self.access: dict[str, Access] = {}
        self.refresh: dict[str, Refresh] = {}
        self.codes: dict[str, Code] = {}
        self.issued_access = 0
        self.issued_refresh = 0

    def _emit(self, kind: str, *, token: str | None = None, **detail: Any) -> None:
        self._recorder.emit(kind, token=token, **detail)

    # ---- clients ---------------------------------------------------------------------------

    def register_client(
        self,
        *,
        redirect_uris: Sequence[str] = (),
        token_endpoint_auth_method: str = "client_secret_basic",
        grant_types: Sequence[str] | None = None,
        scope: str | None = None,
        client_name: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        public_key_pem: str | None = None,
    ) -> ClientRecord:
        public = token_endpoint_auth_method == "none"
        keyed = token_endpoint_auth_method == "private_key_jwt"
        if keyed != (public_key_pem is not None):
            raise ConfigError("private_key_jwt and a public_key_pem go together")
        if grant_types is None:
            grant_types = ("authorization_code", "refresh_token") if public else GRANT_TYPES
        if token_endpoint_auth_method not in AUTH_METHODS:
            raise ConfigError(
                f"unsupported token_endpoint_auth_method {token_endpoint_auth_method!r}"
            )
        unknown = [g for g in grant_types if g not in GRANT_TYPES]
        if unknown:
            raise ConfigError(f"unsupported grant_types {unknown}")
        if public and "client_credentials" in grant_types:
            raise ConfigError("a public client cannot use the client_credentials grant")
        record = ClientRecord(
            client_id=client_id or secrets.token_urlsafe(12),
            client_secret=None if public or keyed else (client_secret or secrets.token_urlsafe(24)),
            redirect_uris=tuple(redirect_uris),
            token_endpoint_auth_method=token_endpoint_auth_method,
            grant_types=tuple(grant_types),
            scope=scope,
            client_name=client_name,
            public_key_pem=None if public_key_pem is None else check_public_key(public_key_pem),
        )
        if record.client_id in self.clients:
            raise ConfigError(f"client {record.client_id!r} is already registered")
        self.clients[record.client_id] = record
        self._emit(
            "client.registered", client_id=record.client_id, method=token_endpoint_auth_method
        )
        return record

    # ---- issuing ---------------------------------------------------------------------------

    def new_family(self, client_id: str) -> Family:
        return Family(id=secrets.token_hex(4), client_id=client_id)

    def issue(
        self,
        family: Family,
        scope: str | None,
        resource: str | None,
        *,
        grant_type: str,
        with_refresh: bool,
    ) -> TokenPair:
        policy = self._policy()
        now = self._clock.time()
        ttl = policy.access_ttl
        access_token = secrets.token_urlsafe(32)
        self.access[access_token] = Access(family, scope, resource, now, now + ttl)
        self.issued_access += 1
        refresh_token = None
        if with_refresh:
            refresh_token = secrets.token_urlsafe(32)
            self.refresh[refresh_token] = Refresh(family, scope, resource, now)
            self.issued_refresh += 1
        self._forget_dead()
        self._emit(
            "token.issued",
            token=access_token,
            refresh=fingerprint(refresh_token),
            family=family.id,
            grant_type=grant_type,
            client_id=family.client_id,
            expires_at=now + ttl,
        )
        return TokenPair(
            access_token=access_token,
            refresh_token=refresh_token,
            expires_in=int(ttl) if policy.report_expires_in else None,
            scope=scope,
        )

    # ---- validity --------------------------------------------------------------------------

    def _forget_dead(self) -> None:
        # Oldest first (dicts keep issue order); a bounded look at the front each time, so
        # issuing stays cheap while live tokens beyond the cap are kept.
        _forget(self.access, self._keep, lambda access: not self.active(access))
        _forget(self.refresh, self._keep, lambda refresh: not self.refresh_usable(refresh))

    def active(self, access: Access) -> bool:
        return (
            not access.revoked
            and not access.family.revoked
            and self._clock.time() < access.expires_at
        )

    def refresh_usable(self, refresh: Refresh) -> bool:
        if refresh.family.revoked or refresh.expired:
            return False
        if refresh.superseded_at is None:
            return True
        return self._clock.time() - refresh.superseded_at < self._policy().grace_period

    def validate_access_token(self, token: str) -> TokenInfo | None:
        access = self.access.get(token)
        if access is None or not self.active(access):
            return None
        return TokenInfo(
            client_id=access.family.client_id,
            scope=access.scope,
            resource=access.resource,
            expires_at=access.expires_at,
            family=access.family.id,
        )

    def family_of(self, token: str) -> Family | None:
        if (access := self.access.get(token)) is not None:
            return access.family
        if (refresh := self.refresh.get(token)) is not None:
            return refresh.family
        return None

    # ---- ending tokens ---------------------------------------------------------------------

    def rotate(self) -> None:
        """Invalidate every currently valid access token; refresh tokens stay valid."""
        live = [a for a in self.access.values() if self.active(a)]
        for access in live:
            access.revoked = True
        self._emit("tokens.rotated", count=len(live))

    def expire(self, token: str) -> None:
        if (access := self.access.get(token)) is not None:
            access.expires_at = min(access.expires_at, self._clock.time())
            self._emit("token.expired", token=token, type="access", family=access.family.id)
        elif (refresh := self.refresh.get(token)) is not None:
            refresh.expired = True
            self._emit("token.expired", token=token, type="refresh", family=refresh.family.id)
        else:
            raise UnknownTokenError(f"unknown token {fingerprint(token)}")

    def revoke_family(self, token: str) -> None:
        family = self.family_of(token)
        if family is None:
            raise UnknownTokenError(f"unknown token {fingerprint(token)}")
        self.revoke(family, reason="control")

    def revoke(self, family: Family, *, reason: str) -> None:
        family.revoked = True
        self._emit("family.revoked", family=family.id, reason=reason)


def _forget(tokens: dict[str, _T], keep: int, dead: Callable[[_T], bool]) -> None:
    excess = len(tokens) - keep
    if excess <= 0:
        return
    for token in list(itertools.islice(tokens, 2 * excess)):
        if excess <= 0:
            return
        if dead(tokens[token]):
            del tokens[token]
            excess -= 1
