"""``private_key_jwt`` at the fake authorization server: checking a client's signed assertion.

A client registered with ``token_endpoint_auth_method="private_key_jwt"`` and its public key
(PEM) authenticates with a ``client_assertion`` JWT (RFC 7523 §2.2, §3): signed by its key with
an asymmetric algorithm, ``iss`` and ``sub`` its client id, ``aud`` the issuer identifier (or
the token endpoint URL, which RFC 7523 allowed), not expired, not issued in the future, valid
for at most :data:`MAX_LIFETIME` seconds, and a ``jti`` never seen before while it is valid.
Anything else is ``invalid_client`` (401), with a description that says which check failed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

from freshtoken._clock import Clock
from freshtoken._errors import ConfigError
from freshtoken.fakes._oauth_models import ClientRecord, OAuthError

__all__ = [
    "ASSERTION_TYPE",
    "SIGNING_ALGORITHMS",
    "AssertionChecker",
    "check_public_key",
    "public_key_from_jwks",
]

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SIGNING_ALGORITHMS: Final = (
    "ES256",
    "ES384",
    "ES512",
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "EdDSA",
)
"""What the fake accepts (and advertises): asymmetric algorithms only, never ``none`` or HMAC."""
MAX_LIFETIME: Final = 300
"""The longest ``exp - iat`` accepted, in seconds."""
_LEEWAY: Final = 30
_MAX_REMEMBERED: Final = 100_000
_PURGE_AT: Final = 1_000


def check_public_key(pem: str) -> str:
    """``pem`` if it is a PEM public key the fake can verify with, else :class:`ConfigError`."""
    from cryptography.hazmat.primitives import serialization

    try:
        serialization.load_pem_public_key(pem.encode("utf-8"))
    except (ValueError, TypeError):
        raise ConfigError("public_key_pem: not a PEM public key") from None
    return pem


def public_key_from_jwks(jwks: object) -> str:
    """The PEM of the one public key in an RFC 7591 ``jwks`` client metadata value, or
    :class:`ConfigError` (a JWK Set with exactly one asymmetric public key is accepted)."""
    import jwt
    from cryptography.hazmat.primitives import serialization

    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or len(keys) != 1 or not isinstance(keys[0], dict):
        raise ConfigError("jwks: a JWK Set holding exactly one key")
    if "d" in keys[0] or keys[0].get("kty") not in ("EC", "RSA", "OKP"):
        raise ConfigError("jwks: the key must be an asymmetric public key (EC, RSA or OKP)")
    try:
        key = jwt.PyJWK(keys[0]).key
        pem: bytes = key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError):
        raise ConfigError("jwks: not a usable public key") from None
    return pem.decode("ascii")


class AssertionChecker:
    """Checks client assertions against the registered clients' keys; remembers ``jti``."""

    def __init__(self, *, clock: Clock, audiences: Callable[[], Sequence[str]]) -> None:
        self._clock = clock
        self._audiences = audiences
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}

    def client_id(self, form: dict[str, str]) -> str:
        """The client an assertion request names: its ``client_id``, else the assertion's
        (unverified) ``iss`` — only used to find the key the signature is then checked with."""
        if form.get("client_id"):
            return form["client_id"]
        import jwt

        try:
            claims = jwt.decode(
                form.get("client_assertion", ""), options={"verify_signature": False}
            )
        except jwt.PyJWTError:
            raise _refused("the client_assertion is not a JWT") from None
        issuer = claims.get("iss")
        return issuer if isinstance(issuer, str) else ""

    def check(self, client: ClientRecord, form: dict[str, str]) -> None:
        """Accept the request's assertion for ``client`` or raise ``invalid_client``."""
        import jwt

        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise _refused(f"client_assertion_type must be {ASSERTION_TYPE}")
        if client.token_endpoint_auth_method != "private_key_jwt" or not client.public_key_pem:
            raise _refused("the client is not registered for private_key_jwt")
        try:
            claims: dict[str, Any] = jwt.decode(
                form.get("client_assertion", ""),
                client.public_key_pem,
                algorithms=list(SIGNING_ALGORITHMS),
                audience=list(self._audiences()),
                # Times are checked below on the fake's clock (a test may have moved it).
                options={
                    "require": ["iss", "sub", "aud", "exp", "iat", "jti"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise _refused(f"the client_assertion was refused: {exc}") from None
        if claims["iss"] != client.client_id or claims["sub"] != client.client_id:
            raise _refused("the client_assertion's iss and sub must be the client id")
        now = self._clock.time()
        issued, expires = claims["iat"], claims["exp"]
        if not all(isinstance(t, int | float) for t in (issued, expires)):
            raise _refused("the client_assertion's iat and exp must be numbers")
        if expires + _LEEWAY < now:
            raise _refused("the client_assertion has expired")
        if issued > now + _LEEWAY:
            raise _refused("the client_assertion was issued in the future")
        if expires - issued > MAX_LIFETIME:
            raise _refused(f"the client_assertion is valid for more than {MAX_LIFETIME} s")
        self._remember(str(claims["jti"]), float(expires), now)

    def _remember(self, jti: str, expires: float, now: float) -> None:
        with self._lock:
            if len(self._seen) >= _PURGE_AT:
                # Forget spent ids whose assertions can no longer be presented anyway.
                self._seen = {j: t for j, t in self._seen.items() if t + _LEEWAY >= now}
            if jti in self._seen:
                raise _refused("the client_assertion was presented before (its jti is spent)")
            if len(self._seen) >= _MAX_REMEMBERED:
                raise _refused("too many client assertions in flight")
            self._seen[jti] = expires


def _refused(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, 401)
