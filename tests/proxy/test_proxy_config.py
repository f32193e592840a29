"""The TOML configuration file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import aiohttp
import pytest

from freshtoken import ConfigError
from freshtoken.fakes import FakeAuthorizationServer, FakeCA, FakeMCPServer
from freshtoken.proxy import (
    ClientCredentialsSource,
    CommandTokenSource,
    RefreshTokenSource,
    StaticTokenSource,
    default_matcher,
    load_config,
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proxy.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_full_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FT_SECRET", "s3cret")
    monkeypatch.setenv("FT_RT", "rt-1")
    ca = FakeCA(tmp_path / "ca")
    path = _write(
        tmp_path,
        f"""
        [listen]
        host = "127.0.0.1"
        port = 0
        secret = "fixed-secret"
        allowed_origins = ["https://app.example"]

        [limits]
        max_body = 2048
        sse_peek_bytes = 4096
        sse_peek_timeout = 2.5
        connect_timeout = 3

        [matcher]
        patterns = ["session expired"]

        [targets.a]
        url = "https://mcp.example/mcp"
        ca_file = "{ca.ca_path}"
        [targets.a.token]
        type = "refresh_token"
        token_endpoint = "https://as.example/token"
        client_id = "cid"
        client_secret_env = "FT_SECRET"
        refresh_token_env = "FT_RT"
        resource = "https://mcp.example/mcp"
        store = "state/tokens.json"

        [targets.b]
        url = "http://127.0.0.1:9/mcp"
        [targets.b.token]
        type = "client_credentials"
        token_endpoint = "https://as.example/token"
        client_id = "cid"
        client_secret = "inline"
        scope = "mcp"

        [targets.c]
        url = "http://127.0.0.1:9/mcp"
        [targets.c.token]
        type = "command"
        command = ["print-token", "--fresh"]

        [targets.d]
        url = "http://127.0.0.1:9/mcp"
        [targets.d.token]
        type = "static"
        token = "abc"
        """,
    )
    config = load_config(path)
    assert config.secret == "fixed-secret"
    assert config.allowed_origins == ("https://app.example",)
    assert (config.max_body, config.sse_peek_bytes, config.sse_peek_timeout) == (2048, 4096, 2.5)
    assert config.matcher is not default_matcher
    assert config.matcher({"error": {"code": 1, "message": "Your session expired"}})
    kinds = {t.name: type(t.source) for t in config.targets}
    assert kinds == {
        "a": RefreshTokenSource,
        "b": ClientCredentialsSource,
        "c": CommandTokenSource,
        "d": StaticTokenSource,
    }
    a = config.targets[0].source
    assert isinstance(a, RefreshTokenSource)
    assert a.store == tmp_path / "state" / "tokens.json"
    assert a.resource == "https://mcp.example/mcp"
    assert config.targets[0].ssl_context is not None
    proxy = config.create_proxy()
    assert proxy.secret == "fixed-secret"
    assert proxy.limits.max_body == 2048
    ca.close()


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("[listen\n", "", "not valid TOML"),
        ("", "targets", "at least one"),
        (
            "[listen]\nport = 'x'\n[targets.a]\nurl='http://h/'\n[targets.a.token]\ntype='static'\ntoken='t'",
            "listen.port",
            "must be an integer",
        ),
        (
            "[listen]\nhost = '0.0.0.0'\n[targets.a]\nurl='http://h/'\n[targets.a.token]\ntype='static'\ntoken='t'",
            "listen.host",
            "loopback",
        ),
        ("[listen]\nbogus = 1\n", "listen.bogus", "unknown key"),
        ("[limits]\nmax_body = 0\n", "limits.max_body", "must be > 0"),
        (
            "[targets.a]\n[targets.a.token]\ntype='static'\ntoken='t'",
            "targets.a.url",
            "is required",
        ),
        (
            "[targets.a]\nurl='ftp://h/'\n[targets.a.token]\ntype='static'\ntoken='t'",
            "targets.a.url",
            "http(s)",
        ),
        ("[targets.a]\nurl='http://h/'\n", "targets.a.token.type", "token table is required"),
        (
            "[targets.a]\nurl='http://h/'\n[targets.a.token]\ntype='magic'",
            "targets.a.token.type",
            "must be one of",
        ),
        (
            "[targets.a]\nurl='http://h/'\n[targets.a.token]\ntype='static'",
            "targets.a.token.token",
            "is required",
        ),
        (
            "[targets.a]\nurl='http://h/'\n[targets.a.token]\ntype='static'\ntoken_env='FT_UNSET_VAR'",
            "targets.a.token.token_env",
            "FT_UNSET_VAR is not set",
        ),
        (
            "[targets.a]\nurl='http://h/'\n[targets.a.token]\ntype='refresh_token'\ntoken_endpoint='https://as/t'\nclient_id='c'",
            "targets.a.token.refresh_token",
            "is required",
        ),
        (
            "[targets.a]\nurl='http://h/'\n[targets.a.token]\ntype='command'\ncommand=[]",
            "targets.a.token.command",
            "non-empty",
        ),
        (
            "[targets.a]\nurl='http://h/'\n[targets.a.token]\ntype='static'\ntoken='t'\nextra=1",
            "targets.a.token.extra",
            "unknown key",
        ),
        (
            "[targets._control]\nurl='http://h/'\n[targets._control.token]\ntype='static'\ntoken='t'",
            "targets._control",
            "invalid target name",
        ),
        (
            "[matcher]\nfunction='nope_no_module:f'\n[targets.a]\nurl='http://h/'\n[targets.a.token]\ntype='static'\ntoken='t'",
            "matcher.function",
            "cannot import",
        ),
        (
            "[matcher]\npatterns=['(']\n[targets.a]\nurl='http://h/'\n[targets.a.token]\ntype='static'\ntoken='t'",
            "matcher.patterns",
            "invalid",
        ),
    ],
)
def test_bad_configs_name_file_key_and_reason(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key}")
    assert reason in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_matcher_function_is_imported(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        [matcher]
        function = "freshtoken.proxy:default_matcher"
        [targets.a]
        url = "http://127.0.0.1:9/"
        [targets.a.token]
        type = "static"
        token = "t"
        """,
    )
    assert load_config(path).matcher is default_matcher


async def test_config_serves_a_tls_target(tmp_path: Path) -> None:
    ca = FakeCA(tmp_path / "ca")
    async with (
        FakeAuthorizationServer(ssl_context=ca.server_ssl_context()) as auth,
        FakeMCPServer(authorization_server=auth, ssl_context=ca.server_ssl_context()) as mcp,
    ):
        pair = auth.issue_tokens(resource=mcp.url)
        path = _write(
            tmp_path,
            f"""
            [targets.fake]
            url = "{mcp.url}"
            ca_file = "ca/freshtoken-ca.pem"
            [targets.fake.token]
            type = "refresh_token"
            token_endpoint = "{auth.token_endpoint}"
            client_id = "{auth.client_id}"
            client_secret = "{auth.client_secret}"
            refresh_token = "{pair.refresh_token}"
            resource = "{mcp.url}"
            ca_file = "ca/freshtoken-ca.pem"
            """,
        )
        config = load_config(path)
        async with config.create_proxy() as proxy, aiohttp.ClientSession() as http:
            urls = config.register_all(proxy)
            resp = await http.post(
                urls["fake"],
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "t", "version": "0"},
                    },
                },
                headers={"Accept": "application/json, text/event-stream"},
            )
            assert resp.status == 200
            assert (await resp.json())["result"]["protocolVersion"] == "2025-11-25"
        auth.check()
        mcp.check()
    ca.close()
