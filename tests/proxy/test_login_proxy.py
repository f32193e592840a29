"""From ``freshtoken login`` to ``freshtoken proxy``: the stored login is all the proxy needs.

A target with ``type = "login"`` names its store and nothing else; the proxy refreshes from the
login record through rotations, keeps the record when it writes rotated tokens, and a proxy
stuck on a refused grant recovers when the user logs in again — no restart.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from conftest import RawMCPClient, text_of
from token_helpers import private_pem, public_pem

from freshtoken import ConfigError
from freshtoken.fakes import FakeAuthorizationServer, FakeCA, FakeMCPServer
from freshtoken.proxy import LoginTarget, Proxy, load_config, load_login_targets, login


async def _freshtoken(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "freshtoken",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _config(path: Path, mcp_url: str, ca: Path) -> Path:
    path.write_text(
        f"""
[targets.fake]
url = "{mcp_url}"
ca_file = "{ca}"
[targets.fake.token]
type = "login"
store = "state/fake.json"
ca_file = "{ca}"
"""
    )
    return path


async def test_login_then_proxy_serves_through_rotations_over_tls(tmp_path: Path) -> None:
    with FakeCA() as ca:
        async with (
            FakeAuthorizationServer(ssl_context=ca.server_ssl_context()) as auth,
            FakeMCPServer(
                authorization_server=auth,
                ssl_context=ca.server_ssl_context(),
                response_mode="json",
            ) as mcp,
        ):
            config = _config(tmp_path / "proxy.toml", mcp.url, ca.ca_path)
            code, out, err = await _freshtoken(
                "login", "fake", "--config", str(config), "--headless"
            )
            assert code == 0, err
            store = tmp_path / "state" / "fake.json"
            stored = json.loads(store.read_text())
            assert out.startswith(f"logged in to {mcp.url}; client ")
            assert stored["refresh_token"] not in out + err
            assert stored["access_token"] not in out + err

            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "freshtoken",
                "proxy",
                "--config",
                str(config),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                assert proc.stdout is not None
                name, local = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().split()
                assert name == "fake"
                async with aiohttp.ClientSession() as http:
                    client = RawMCPClient(http, local)
                    await client.initialize()
                    seen = []
                    for _ in range(3):
                        status, answer = await client.call("whoami")
                        assert status == 200, answer
                        seen.append(text_of(answer))
                        auth.rotate()  # every access token dies, server-side
                # The first call used the access token the login stored (no grant spent);
                # each rotation cost exactly one refresh; nobody was asked to log in again.
                assert len(set(seen)) == 3
                refreshes = auth.token_requests_seen("refresh_token")
                assert [r.status for r in refreshes] == [200, 200]
                assert auth.authorizations_seen() == 1
            finally:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 20)
            # The rotated refresh token was stored, and the login record kept beside it.
            after = json.loads(store.read_text())
            assert after["refresh_token"] != stored["refresh_token"]
            assert after["login"] == stored["login"]
            assert proc.returncode == 0
            auth.check()


async def test_a_stuck_proxy_recovers_when_the_user_logs_in_again(tmp_path: Path) -> None:
    async with (
        FakeAuthorizationServer() as auth,
        FakeMCPServer(authorization_server=auth, response_mode="json") as mcp,
    ):
        store = tmp_path / "fake.json"
        first = await login(LoginTarget(url=mcp.url, store=store), mode="headless")
        config = tmp_path / "proxy.toml"
        config.write_text(
            f'[targets.fake]\nurl = "{mcp.url}"\n'
            f'[targets.fake.token]\ntype = "login"\nstore = "{store}"\n'
        )
        target = load_config(config).targets[0]
        async with Proxy() as proxy, aiohttp.ClientSession() as http:
            client = RawMCPClient(http, proxy.register("fake", mcp.url, target.source))
            await client.initialize()
            # The grant is revoked server-side: the refresh is refused, the proxy is stuck.
            auth.revoke_family(json.loads(store.read_text())["refresh_token"])
            status, answer = await client.call("echo", {"text": "hi"})
            assert status == 502, answer
            assert "invalid_grant" in json.dumps(answer)
            refused = len(auth.token_requests_seen("refresh_token"))
            status, _ = await client.call("echo", {"text": "hi"})
            assert status == 502
            assert len(auth.token_requests_seen("refresh_token")) == refused  # terminal: no retry

            second = await login(LoginTarget(url=mcp.url, store=store), mode="headless")
            assert second.login.client_id == first.login.client_id
            status, answer = await client.call("echo", {"text": "hi"})
            assert status == 200, answer
            # The new login's access token was used as it was: no grant spent to recover.
            assert len(auth.token_requests_seen("refresh_token")) == refused
        await target.source.aclose()  # type: ignore[attr-defined]


def test_a_login_target_without_a_login_yet_says_what_to_run(tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(
        '[targets.linear]\nurl = "https://mcp.example/mcp"\n'
        '[targets.linear.token]\ntype = "login"\nstore = "linear.json"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert info.value.field == "targets.linear.token.store"
    assert f"run `freshtoken login linear --config {config}` first" in str(info.value)
    # What login itself reads from the same file.
    [(name, target)] = load_login_targets(config).items()
    assert name == "linear"
    assert isinstance(target, LoginTarget)
    assert target.store == tmp_path / "linear.json"
    assert target.url == "https://mcp.example/mcp"


def test_login_targets_from_a_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GH_SECRET", "s3cret")
    config = tmp_path / "proxy.toml"
    config.write_text(
        """
[targets.github]
url = "https://mcp.example/github"
[targets.github.token]
type = "refresh_token"
token_endpoint = "https://as.example/token"
client_id = "gh-client"
client_secret_env = "GH_SECRET"
auth_method = "client_secret_post"
scope = "repo"
store = "gh.json"

[targets.static]
url = "https://mcp.example/static"
[targets.static.token]
type = "static"
token = "abc"

[targets.nostore]
url = "https://mcp.example/nostore"
[targets.nostore.token]
type = "refresh_token"
token_endpoint = "https://as.example/token"
client_id = "c"
refresh_token = "r"
"""
    )
    targets = load_login_targets(config)
    github = targets["github"]
    assert isinstance(github, LoginTarget)
    assert (github.client_id, github.client_secret, github.auth_method) == (
        "gh-client",
        "s3cret",
        "client_secret_post",
    )
    assert (github.token_endpoint, github.scope, github.store) == (
        "https://as.example/token",
        "repo",
        tmp_path / "gh.json",
    )
    static = targets["static"]
    assert isinstance(static, ConfigError)
    assert static.field == "targets.static.token.type"
    nostore = targets["nostore"]
    assert isinstance(nostore, ConfigError)
    assert nostore.field == "targets.nostore.token.store"


async def test_a_key_client_logs_in_and_the_proxy_refreshes_with_its_key(tmp_path: Path) -> None:
    # A pre-registered client that authenticates with private_key_jwt only (it has no secret):
    # the code exchange and every later refresh carry an assertion the fake AS checks.
    from cryptography.hazmat.primitives.asymmetric import ec

    from freshtoken.proxy import ClientKey

    private = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "client-key.pem"
    key_file.write_bytes(private_pem(private))
    async with (
        FakeAuthorizationServer() as auth,
        FakeMCPServer(authorization_server=auth, response_mode="json") as mcp,
    ):
        auth.register_client(
            client_id="keyed",
            token_endpoint_auth_method="private_key_jwt",
            public_key_pem=public_pem(private),
        )
        store = tmp_path / "keyed.json"
        target = LoginTarget(
            url=mcp.url,
            store=store,
            client_id="keyed",
            client_key=ClientKey.from_file(key_file),
            private_key_file=key_file,
        )
        await login(target, mode="headless", redirect_timeout=20)
        record = json.loads(store.read_text())["login"]
        assert (record["auth_method"], record.get("client_secret")) == ("private_key_jwt", None)
        assert (record["private_key_file"], record["signing_alg"]) == (str(key_file), "ES256")
        assert "PRIVATE" not in store.read_text()
        config = tmp_path / "proxy.toml"
        config.write_text(
            f'[targets.fake]\nurl = "{mcp.url}"\n'
            f'[targets.fake.token]\ntype = "login"\nstore = "{store}"\n'
        )
        async with Proxy() as proxy, aiohttp.ClientSession() as http:
            local = load_config(config).register_all(proxy)["fake"]
            client = RawMCPClient(http, local)
            await client.initialize()
            for _ in range(2):
                auth.rotate()
                status, answer = await client.call("whoami")
                assert status == 200, answer
        grants = [(r.grant_type, r.client_id, r.status) for r in auth.token_requests_seen()]
        assert grants == [
            ("authorization_code", "keyed", 200),
            ("refresh_token", "keyed", 200),
            ("refresh_token", "keyed", 200),
        ]
        auth.check()


async def test_a_key_without_a_client_id_registers_a_keyed_client(tmp_path: Path) -> None:
    # RFC 7591 with the key's public half as jwks; the registration is reused by the next login
    # with the same key file, and a different key registers anew.
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from freshtoken.proxy import ClientKey

    first, second = tmp_path / "first.pem", tmp_path / "second.pem"
    first.write_bytes(private_pem(ec.generate_private_key(ec.SECP256R1())))
    second.write_bytes(private_pem(ed25519.Ed25519PrivateKey.generate()))
    store = tmp_path / "keyed.json"

    def target(url: str, key_file: Path) -> LoginTarget:
        key = ClientKey.from_file(key_file, key_id="k1")
        return LoginTarget(url=url, store=store, client_key=key, private_key_file=key_file)

    async with (
        FakeAuthorizationServer() as auth,
        FakeMCPServer(authorization_server=auth, response_mode="json") as mcp,
    ):
        await login(target(mcp.url, first), mode="headless", redirect_timeout=20)
        record = json.loads(store.read_text())["login"]
        assert (record["registration"], record["auth_method"]) == ("dynamic", "private_key_jwt")
        registered = auth.core.client(record["client_id"])
        assert registered is not None
        assert registered.token_endpoint_auth_method == "private_key_jwt"
        assert registered.client_secret is None
        await login(target(mcp.url, first), mode="headless", redirect_timeout=20)
        assert json.loads(store.read_text())["login"]["client_id"] == record["client_id"]
        await login(target(mcp.url, second), mode="headless", redirect_timeout=20)
        again = json.loads(store.read_text())["login"]
        assert again["client_id"] != record["client_id"]
        assert again["signing_alg"] == "EdDSA"
        grants = [(r.grant_type, r.status) for r in auth.token_requests_seen()]
        assert grants == [("authorization_code", 200)] * 3
        auth.check()
