"""The fake authorization server checks ``private_key_jwt`` client assertions (RFC 7523), on a
real socket: the proxy's own token sources authenticate with a key, and hostile assertions (wrong
key, ``alg: none``, an HMAC signed with the public key, a wrong audience or issuer, expired on
the fake's clock, replayed, too long-lived) are each refused with ``invalid_client``."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from freshtoken import ConfigError, ManualClock
from freshtoken.fakes import FakeAuthorizationServer, OAuthCore
from freshtoken.proxy import ClientCredentialsSource, ClientKey, RefreshTokenSource

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLIENT = "keyed-client"
PRIVATE = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())


def _private_pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


PUBLIC_PEM = (
    PRIVATE.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def _register(auth: FakeAuthorizationServer) -> None:
    auth.register_client(
        client_id=CLIENT,
        token_endpoint_auth_method="private_key_jwt",
        public_key_pem=PUBLIC_PEM,
        grant_types=["client_credentials", "refresh_token"],
    )


async def test_the_proxys_sources_authenticate_with_a_key() -> None:
    clock = ManualClock()
    async with FakeAuthorizationServer(clock=clock) as auth:
        _register(auth)
        key = ClientKey.from_pem(_private_pem(PRIVATE))
        common: dict[str, Any] = {
            "auth_method": "private_key_jwt",
            "client_key": key,
            "issuer": auth.issuer,
            "clock": clock,
        }
        machine = ClientCredentialsSource(auth.token_endpoint, CLIENT, None, **common)
        pair = auth.issue_tokens(CLIENT)
        refreshing = RefreshTokenSource(
            auth.token_endpoint, CLIENT, None, refresh_token=pair.refresh_token, **common
        )
        try:
            assert auth.validate_access_token(await machine.token()) is not None
            assert auth.validate_access_token(await refreshing.token()) is not None
        finally:
            await machine.aclose()
            await refreshing.aclose()
        seen = auth.token_requests_seen()
        assert [(s.grant_type, s.client_id, s.status) for s in seen] == [
            ("client_credentials", CLIENT, 200),
            ("refresh_token", CLIENT, 200),
        ]
        async with httpx.AsyncClient() as http:
            metadata = (await http.get(auth.metadata_url)).json()
        assert "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"]
        assert "ES256" in metadata["token_endpoint_auth_signing_alg_values_supported"]
        assert "none" not in metadata["token_endpoint_auth_signing_alg_values_supported"]
        auth.check()


def _claims(auth: FakeAuthorizationServer, now: float, **changes: Any) -> dict[str, Any]:
    claims = {
        "iss": CLIENT,
        "sub": CLIENT,
        "aud": auth.issuer,
        "iat": int(now),
        "exp": int(now) + 60,
        "jti": f"jti-{time.perf_counter_ns()}",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _unsigned(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _hmac_with_public_key(claims: dict[str, Any]) -> str:
    # The algorithm-confusion attack: an HMAC keyed with the (public) verification key. PyJWT
    # refuses to make one with a PEM key, so it is built by hand.
    import hashlib
    import hmac

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = part(json.dumps(claims).encode())
    mac = hmac.new(PUBLIC_PEM.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{part(mac)}"


async def test_hostile_assertions_are_refused_each_for_its_reason() -> None:
    clock = ManualClock()
    async with FakeAuthorizationServer(clock=clock) as auth:
        _register(auth)
        now = clock.time()

        def signed(key: Any = PRIVATE, **changes: Any) -> str:
            return jwt.encode(_claims(auth, now, **changes), key, algorithm="ES256")

        replayed = signed(jti="once")
        cases = [
            (signed(OTHER), "Signature verification failed"),
            (_unsigned(_claims(auth, now)), "refused"),
            (_hmac_with_public_key(_claims(auth, now)), "refused"),
            (signed(aud="https://elsewhere.example"), "Audience"),
            (signed(iss="someone-else"), "iss and sub"),
            (signed(exp=int(now) - 120, iat=int(now) - 180), "expired"),
            (signed(iat=int(now) + 600, exp=int(now) + 660), "in the future"),
            (signed(exp=int(now) + 3600), "more than 300 s"),
            (signed(jti=None), "jti"),
            ("not.a.jwt", "refused"),
            (replayed, None),
            (replayed, "presented before"),
        ]
        async with httpx.AsyncClient() as http:
            for assertion, reason in cases:
                form = {
                    "grant_type": "client_credentials",
                    "client_id": CLIENT,
                    "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": assertion,
                }
                answer = await http.post(auth.token_endpoint, data=form)
                if reason is None:
                    assert answer.status_code == 200, answer.text
                    continue
                assert answer.status_code == 401, (reason, answer.text)
                body = answer.json()
                assert body["error"] == "invalid_client"
                assert reason in body["error_description"], (reason, body)
            # RFC 7523 §3: client_id is optional beside an assertion; its iss names the client.
            bare = {k: v for k, v in form.items() if k != "client_id"}
            named = await http.post(
                auth.token_endpoint, data={**bare, "client_assertion": signed()}
            )
            assert named.status_code == 200, named.text
            # An assertion beside a secret, or of the wrong type, is not one method.
            basic = await http.post(
                auth.token_endpoint,
                data={**form, "client_assertion": signed()},
                auth=(CLIENT, "secret"),
            )
            assert (basic.status_code, basic.json()["error"]) == (400, "invalid_request")
            wrong_type = await http.post(
                auth.token_endpoint,
                data={**form, "client_assertion": signed(), "client_assertion_type": "saml"},
            )
            assert wrong_type.status_code == 401
            # Moving the fake's clock past an assertion's expiry refuses it, whatever the wall
            # clock says.
            late = signed()
            clock.advance(400)
            expired = await http.post(auth.token_endpoint, data={**form, "client_assertion": late})
            assert "expired" in expired.json()["error_description"]
        auth.check()


async def test_a_server_without_the_method_refuses_it() -> None:
    core = OAuthCore(token_endpoint_auth_methods=("client_secret_basic",))
    async with FakeAuthorizationServer(core=core) as auth, httpx.AsyncClient() as http:
        metadata = (await http.get(auth.metadata_url)).json()
        assert "token_endpoint_auth_signing_alg_values_supported" not in metadata
        answer = await http.post(
            auth.token_endpoint,
            data={
                "grant_type": "client_credentials",
                "client_id": CLIENT,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": "x.y.z",
            },
        )
        assert answer.status_code == 401
        assert "not supported here" in answer.json()["error_description"]


def test_a_keyed_client_is_registered_with_its_public_key_only() -> None:
    auth = FakeAuthorizationServer()
    with pytest.raises(ConfigError, match="go together"):
        auth.register_client(token_endpoint_auth_method="private_key_jwt")
    with pytest.raises(ConfigError, match="go together"):
        auth.register_client(public_key_pem=PUBLIC_PEM)
    with pytest.raises(ConfigError, match="not a PEM public key"):
        auth.register_client(token_endpoint_auth_method="private_key_jwt", public_key_pem="x")
    client = auth.register_client(
        token_endpoint_auth_method="private_key_jwt", public_key_pem=PUBLIC_PEM
    )
    assert client.client_secret is None


async def test_a_client_registers_its_key_as_a_jwk_set() -> None:
    # RFC 7591 §2: private_key_jwt with the public key in "jwks"; then it authenticates with it.
    public_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(PRIVATE.public_key()))
    private_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(PRIVATE))
    secret_jwk = {"kty": "oct", "k": "c2VjcmV0"}
    clock = ManualClock()
    async with FakeAuthorizationServer(clock=clock) as auth, httpx.AsyncClient() as http:
        metadata = {
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
        }
        for bad, reason in [
            ({}, "exactly one key"),
            ({"jwks": {"keys": [public_jwk, public_jwk]}}, "exactly one key"),
            ({"jwks": {"keys": [private_jwk]}}, "asymmetric public key"),
            ({"jwks": {"keys": [secret_jwk]}}, "asymmetric public key"),
            ({"jwks": {"keys": [{**public_jwk, "x": "AAAA"}]}}, "not a usable public key"),
        ]:
            refused = await http.post(auth.registration_endpoint, json={**metadata, **bad})
            assert refused.status_code == 400
            assert refused.json()["error"] == "invalid_client_metadata"
            assert reason in refused.json()["error_description"]
        answer = await http.post(
            auth.registration_endpoint, json={**metadata, "jwks": {"keys": [public_jwk]}}
        )
        assert answer.status_code == 201, answer.text
        registered = answer.json()
        assert "client_secret" not in registered
        assert registered["jwks"] == {"keys": [public_jwk]}
        key = ClientKey.from_pem(_private_pem(PRIVATE))
        source = ClientCredentialsSource(
            auth.token_endpoint,
            registered["client_id"],
            None,
            auth_method="private_key_jwt",
            client_key=key,
            issuer=auth.issuer,
            clock=clock,
        )
        try:
            assert auth.validate_access_token(await source.token()) is not None
        finally:
            await source.aclose()
        auth.check()
