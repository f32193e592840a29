"""``private_key_jwt`` client authentication (RFC 7523 §2.2, OpenID Connect Core §9).

The client proves who it is with a short-lived JWT it signs with its private key instead of
sending a secret. The assertion names the client as issuer and subject, the authorization
server's issuer identifier as audience (what draft-ietf-oauth-rfc7523bis requires, and what
the token endpoint URL is not), a fresh ``jti`` and a 60-second lifetime; a new one is made
for every request, retries included, so none is ever presented twice.

Signing uses PyJWT with ``cryptography`` (the ``jwt`` extra), imported only when a key is
loaded: a proxy that never uses a private key does not need them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = ["ASSERTION_LIFETIME", "ASSERTION_TYPE", "JWT_EXTRA", "SIGNING_ALGORITHMS", "ClientKey"]

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
"""The ``client_assertion_type`` of a JWT client assertion (RFC 7523 §2.2)."""
ASSERTION_LIFETIME: Final = 60
"""Seconds an assertion is valid for."""
JWT_EXTRA: Final = "pip install 'freshtoken[jwt]'"
"""What installs the signing libraries."""

SIGNING_ALGORITHMS: Final[dict[str, str]] = {
    "ES256": "ec:secp256r1",
    "ES384": "ec:secp384r1",
    "ES512": "ec:secp521r1",
    "RS256": "rsa",
    "RS384": "rsa",
    "RS512": "rsa",
    "PS256": "rsa",
    "PS384": "rsa",
    "PS512": "rsa",
    "EdDSA": "ed25519",
}
"""Each JWS algorithm freshtoken signs with, and the kind of key it takes."""

_DEFAULT_ALGORITHM: Final = {
    "ec:secp256r1": "ES256",
    "ec:secp384r1": "ES384",
    "ec:secp521r1": "ES512",
    "rsa": "RS256",
    "ed25519": "EdDSA",
}
_MIN_RSA_BITS: Final = 2048


@dataclass(frozen=True)
class ClientKey:
    """A client's private key for ``private_key_jwt``, and the algorithm it signs with.

    Load one with :meth:`from_pem` or :meth:`from_file`; the algorithm defaults to the one the
    key's type implies (ES256 for a P-256 key, RS256 for RSA, EdDSA for Ed25519). A key that
    cannot be read, is encrypted, is too weak or does not fit the algorithm is a
    :class:`ValueError` that names the key's source, never its contents.
    """

    algorithm: str
    key_id: str | None = None
    source: str = "the private key"
    _key: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_pem(
        cls,
        pem: str | bytes,
        algorithm: str | None = None,
        *,
        key_id: str | None = None,
        source: str = "the private key",
    ) -> ClientKey:
        """The key in ``pem`` (a PKCS#8, PKCS#1 or SEC1 private key, unencrypted)."""
        serialization, exceptions = _crypto()
        data = pem.encode("utf-8") if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except TypeError:
            raise ValueError(f"{source}: an encrypted key; give it unencrypted") from None
        except (ValueError, exceptions.UnsupportedAlgorithm):
            raise ValueError(f"{source}: not a PEM private key") from None
        kind = _kind(key)
        if kind not in _DEFAULT_ALGORITHM:
            raise ValueError(f"{source}: a key of a type freshtoken does not sign with")
        if kind == "rsa" and key.key_size < _MIN_RSA_BITS:
            raise ValueError(f"{source}: an RSA key of {key.key_size} bits (at least 2048)")
        chosen = algorithm if algorithm is not None else _DEFAULT_ALGORITHM[kind]
        wanted = SIGNING_ALGORITHMS.get(chosen)
        if wanted is None:
            known = ", ".join(SIGNING_ALGORITHMS)
            raise ValueError(f"{source}: unknown signing algorithm {chosen!r} (one of {known})")
        if wanted != kind:
            raise ValueError(f"{source}: {chosen} needs a {wanted} key, this one is {kind}")
        return cls(chosen, key_id, source, key)

    @classmethod
    def from_file(
        cls, path: str | Path, algorithm: str | None = None, *, key_id: str | None = None
    ) -> ClientKey:
        """The key in the PEM file at ``path``."""
        path = Path(path).expanduser()
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the private key: {exc.strerror}") from None
        return cls.from_pem(pem, algorithm, key_id=key_id, source=str(path))

    def public_jwks(self) -> dict[str, Any]:
        """The public half as an RFC 7517 JWK Set: what RFC 7591 registration sends as ``jwks``."""
        import json

        from jwt.algorithms import get_default_algorithms

        jwk = json.loads(get_default_algorithms()[self.algorithm].to_jwk(self._key.public_key()))
        jwk.update({"use": "sig", "alg": self.algorithm})
        if self.key_id is not None:
            jwk["kid"] = self.key_id
        return {"keys": [jwk]}

    def assertion(self, *, client_id: str, audience: str, now: float) -> str:
        """A signed client assertion for one request to ``audience`` (the AS's issuer)."""
        import jwt

        issued = int(now)
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME,
            "jti": secrets.token_urlsafe(24),
        }
        headers = {"kid": self.key_id} if self.key_id is not None else None
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers=headers)


def _crypto() -> tuple[Any, Any]:
    try:
        import jwt  # noqa: F401  # signing needs it; fail here, at loading, not at the first grant
        from cryptography import exceptions
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        raise ValueError(
            f"private_key_jwt needs PyJWT and cryptography, which are not installed: {JWT_EXTRA}"
        ) from None
    return serialization, exceptions


def _kind(key: Any) -> str | None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"ec:{key.curve.name}"
    return None
