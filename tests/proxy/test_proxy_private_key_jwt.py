"""``private_key_jwt`` client authentication (RFC 7523 §2.2) at a token endpoint on a real socket.

The assertions are checked with ``cryptography`` directly (the base64url segments split and
the signature verified by hand), not with the PyJWT that made them.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa, utils
from token_helpers import drive, private_pem, respond, scripted_endpoint, token_response

from freshtoken import ConfigError, ManualClock
from freshtoken.proxy import (
    ClientCredentialsSource,
    ClientKey,
    LoginError,
    RefreshTokenSource,
    StoredLogin,
    load_config,
    logout,
)
from freshtoken.proxy._jwt import ASSERTION_TYPE
from freshtoken.proxy._store import StoredTokens, TokenStore

ISSUER = "https://as.example"
CLIENT = "jwt-client"


KEYS: dict[str, Any] = {
    "ES256": ec.generate_private_key(ec.SECP256R1()),
    "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "EdDSA": ed25519.Ed25519PrivateKey.generate(),
}


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def verified_claims(token: str, public: Any, algorithm: str) -> dict[str, Any]:
    """The claims of ``token`` once its signature checks out with ``public``."""
    head, body, signature = token.split(".")
    header = json.loads(_b64(head))
    assert header == {"alg": algorithm, "typ": "JWT"}
    signed, raw = f"{head}.{body}".encode(), _b64(signature)
    if algorithm == "ES256":
        half = len(raw) // 2
        der = utils.encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )
        public.verify(der, signed, ec.ECDSA(hashes.SHA256()))
    elif algorithm == "RS256":
        public.verify(raw, signed, padding.PKCS1v15(), hashes.SHA256())
    else:
        public.verify(raw, signed)
    claims: dict[str, Any] = json.loads(_b64(body))
    return claims


@pytest.mark.parametrize("algorithm", list(KEYS))
async def test_each_grant_sends_a_fresh_signed_assertion_and_no_secret(algorithm: str) -> None:
    private = KEYS[algorithm]
    key = ClientKey.from_pem(private_pem(private))
    assert key.algorithm == algorithm  # implied by the key's type
    clock = ManualClock()
    script = (respond(503, {"error": "temporarily_unavailable"}), token_response())
    async with scripted_endpoint(*script) as endpoint:
        source = ClientCredentialsSource(
            endpoint.url,
            CLIENT,
            None,
            auth_method="private_key_jwt",
            client_key=key,
            issuer=ISSUER,
            clock=clock,
        )
        try:
            assert await drive(clock, source.token()) == "at-1"
        finally:
            await source.aclose()
    assert len(endpoint.requests) == 2  # the 503, then the grant: one assertion each
    seen = []
    for request in endpoint.requests:
        assert "authorization" not in request.headers
        assert "client_secret" not in request.form
        assert request.form["client_id"] == CLIENT
        assert request.form["client_assertion_type"] == ASSERTION_TYPE
        claims = verified_claims(request.form["client_assertion"], private.public_key(), algorithm)
        assert (claims["iss"], claims["sub"], claims["aud"]) == (CLIENT, CLIENT, ISSUER)
        assert claims["exp"] - claims["iat"] == 60
        assert claims["iat"] <= clock.time()
        seen.append(claims["jti"])
    assert len(set(seen)) == 2, "an assertion was presented twice"


async def test_a_refresh_grant_authenticates_with_the_key_too() -> None:
    private = KEYS["ES256"]
    async with scripted_endpoint(token_response(refresh="rt-2")) as endpoint:
        source = RefreshTokenSource(
            endpoint.url,
            CLIENT,
            None,
            refresh_token="rt-1",
            auth_method="private_key_jwt",
            client_key=ClientKey.from_pem(private_pem(private), "ES256", key_id="k1"),
            issuer=ISSUER,
        )
        try:
            assert await source.token() == "at-1"
        finally:
            await source.aclose()
    [request] = endpoint.requests
    assert request.form["refresh_token"] == "rt-1"
    assertion = request.form["client_assertion"]
    assert json.loads(_b64(assertion.split(".")[0]))["kid"] == "k1"


def test_a_key_and_the_method_go_together_with_an_issuer() -> None:
    key = ClientKey.from_pem(private_pem(KEYS["ES256"]))
    with pytest.raises(ValueError, match="go together"):
        ClientCredentialsSource(ISSUER + "/token", CLIENT, None, auth_method="private_key_jwt")
    with pytest.raises(ValueError, match="go together"):
        ClientCredentialsSource(ISSUER + "/token", CLIENT, "s", client_key=key, issuer=ISSUER)
    with pytest.raises(ValueError, match="issuer"):
        ClientCredentialsSource(
            ISSUER + "/token", CLIENT, None, auth_method="private_key_jwt", client_key=key
        )


def test_bad_keys_are_named_by_their_source_never_shown(tmp_path: Path) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    encrypted = KEYS["ES256"].private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    other = dsa.generate_private_key(key_size=2048)
    cases = [
        (b"not a key", None, "not a PEM private key"),
        (encrypted, None, "an encrypted key"),
        (private_pem(weak), None, "1024 bits"),
        (private_pem(other), None, "does not sign with"),
        (private_pem(KEYS["RS256"]), "ES256", "ES256 needs a ec:secp256r1 key, this one is rsa"),
        (private_pem(KEYS["ES256"]), "HS256", "unknown signing algorithm 'HS256'"),
    ]
    for pem, algorithm, reason in cases:
        with pytest.raises(ValueError, match=reason) as caught:
            ClientKey.from_pem(pem, algorithm, source="client.pem")
        message = str(caught.value)
        assert message.startswith("client.pem: ")
        assert "PRIVATE KEY" not in message
        assert "\n" not in message
    with pytest.raises(ValueError, match="cannot read the private key"):
        ClientKey.from_file(tmp_path / "missing.pem")
    saved = tmp_path / "key.pem"
    saved.write_bytes(private_pem(KEYS["EdDSA"]))
    assert ClientKey.from_file(saved).algorithm == "EdDSA"
    assert "PRIVATE" not in repr(ClientKey.from_file(saved))


async def test_logout_authenticates_the_revocation_with_the_recorded_key(tmp_path: Path) -> None:
    private = KEYS["ES256"]
    key_file = tmp_path / "client-key.pem"
    key_file.write_bytes(private_pem(private))
    async with scripted_endpoint(respond(200, {})) as endpoint:
        store = TokenStore(tmp_path / "store.json")
        record = _keyed_login(key_file, revocation_endpoint=endpoint.url)
        store.save_login(record, StoredTokens(refresh_token=None, access_token="at-1"))
        assert await logout(store.path)
    [request] = endpoint.requests
    assert (request.form["token"], request.form["token_type_hint"]) == ("at-1", "access_token")
    claims = verified_claims(request.form["client_assertion"], private.public_key(), "ES256")
    assert (claims["iss"], claims["aud"]) == (CLIENT, ISSUER)
    assert not store.path.exists()
    # A login whose key file is gone: the store still goes, the failure is one line.
    store.save_login(record, StoredTokens(refresh_token=None, access_token="at-2"))
    key_file.unlink()
    with pytest.raises(LoginError, match="cannot read the private key"):
        await logout(store.path)
    assert not store.path.exists()


def test_a_login_target_reads_the_key_the_login_recorded_or_the_files_own(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "client-key.pem"
    key_file.write_bytes(private_pem(KEYS["ES256"]))
    store = TokenStore(tmp_path / "store.json")
    record = _keyed_login(key_file)
    store.save_login(record, StoredTokens(refresh_token=None, access_token="at-1"))
    config = tmp_path / "proxy.toml"
    target = f'[targets.a]\nurl = "https://mcp.example/mcp"\n[targets.a.token]\ntype = "login"\nstore = "{store.path}"\n'
    config.write_text(target)
    [loaded] = load_config(config).targets
    assert isinstance(loaded.source, ClientCredentialsSource)
    assert loaded.source.issuer == ISSUER
    # A login recorded with a secret, and a key named in the file: the file's key wins.
    other = tmp_path / "other.pem"
    other.write_bytes(private_pem(KEYS["EdDSA"]))
    store.save_login(
        StoredLogin(**{**_fields(record), "auth_method": "client_secret_basic"}),
        StoredTokens(refresh_token=None, access_token="at-1"),
    )
    config.write_text(
        target + 'client_secret = "s"\nauth_method = "private_key_jwt"\n'
        f'private_key_file = "{other}"\nissuer = "{ISSUER}"\n'
    )
    [loaded] = load_config(config).targets
    assert isinstance(loaded.source, ClientCredentialsSource)
    assert loaded.source.issuer == ISSUER
    # The recorded key file is gone: one line naming the store.
    store.save_login(record, StoredTokens(refresh_token=None, access_token="at-1"))
    config.write_text(target)
    key_file.unlink()
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert caught.value.field == "targets.a.token.store"
    assert "cannot read the private key" in caught.value.reason


def _fields(record: StoredLogin) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(record)


def _keyed_login(key_file: Path, **changes: Any) -> StoredLogin:
    """A client-credentials login that authenticates with the ES256 key in ``key_file``."""
    fields: dict[str, Any] = {
        "server_url": "https://mcp.example/mcp",
        "token_endpoint": ISSUER + "/token",
        "client_id": CLIENT,
        "auth_method": "private_key_jwt",
        "grant": "client_credentials",
        "issuer": ISSUER,
        "private_key_file": str(key_file),
        "signing_alg": "ES256",
    }
    return StoredLogin(**{**fields, **changes})
