"""The TOML configuration file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import aiohttp
import pytest
from token_helpers import private_pem

from freshtoken import ConfigError
from freshtoken.fakes import FakeAuthorizationServer, FakeCA, FakeMCPServer
from freshtoken.proxy import (
    ClientCredentialsSource,
    CommandTokenSource,
    Limits,
    RefreshTokenSource,
    StaticTokenSource,
    default_matcher,
    load_config,
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proxy.toml"
    path.write_text(textwrap.dedent(text))
    return path


async def test_full_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
        response_timeout = 30

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
        deadline = 12.5
        max_response_bytes = 65536
        max_retries = 1
        max_retry_wait = 0
        timeout = 4
        refresh_grace = 2.5

        [targets.b]
        url = "http://mcp.internal:9/mcp"
        allow_insecure_http = true
        [targets.b.token]
        type = "client_credentials"
        token_endpoint = "http://as.internal/token"
        allow_insecure_http = true
        client_id = "cid"
        client_secret = "inline"
        scope = "mcp"
        auth_method = "client_secret_post"

        [targets.c]
        url = "http://127.0.0.1:9/mcp"
        [targets.c.token]
        type = "command"
        command = ["print-token", "--fresh"]
        timeout = 5

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
    assert config.limits == Limits(
        max_body=2048,
        sse_peek_bytes=4096,
        sse_peek_timeout=2.5,
        connect_timeout=3,
        response_timeout=30,
    )
    assert config.matcher is not default_matcher
    assert config.matcher({"error": {"code": 1, "message": "Your session expired"}})
    kinds = {t.name: type(t.source) for t in config.targets}
    assert kinds == {
        "a": RefreshTokenSource,
        "b": ClientCredentialsSource,
        "c": CommandTokenSource,
        "d": StaticTokenSource,
    }
    a, b = config.targets[0], config.targets[1]
    assert isinstance(a.source, RefreshTokenSource)
    assert a.source.store == tmp_path / "state" / "tokens.json"
    assert a.source.resource == "https://mcp.example/mcp"
    assert (
        a.source.deadline,
        a.source.max_response_bytes,
        a.source.max_retries,
        a.source.max_retry_wait,
        a.source.timeout,
        a.source.refresh_grace,
    ) == (12.5, 65536, 1, 0.0, 4.0, 2.5)
    assert a.ssl_context is not None
    assert not a.allow_insecure_http
    assert b.allow_insecure_http
    async with config.create_proxy() as proxy:
        assert proxy.secret == "fixed-secret"
        assert proxy.limits is config.limits
        # allow_insecure_http reaches the proxy: b's plain-http upstream off loopback registers.
        urls = config.register_all(proxy)
        assert urls["b"] == f"{proxy.url}/b/mcp"
    ca.close()


def test_defaults(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        [targets.a]
        url = "https://mcp.example/mcp"
        [targets.a.token]
        type = "refresh_token"
        token_endpoint = "https://as.example/token"
        client_id = "cid"
        refresh_token = "rt"
        """,
    )
    config = load_config(path)
    assert (config.host, config.port, config.secret) == ("127.0.0.1", 0, None)
    assert config.limits == Limits()
    assert config.matcher is default_matcher
    [target] = config.targets
    assert isinstance(target.source, RefreshTokenSource)
    assert (
        target.source.timeout,
        target.source.deadline,
        target.source.max_response_bytes,
        target.source.max_retries,
        target.source.max_retry_wait,
    ) == (10.0, 30.0, 1 << 20, 3, 10.0)


_STATIC = "\n[targets.a.token]\ntype='static'\ntoken='t'"
_TARGET = "[targets.a]\nurl='http://127.0.0.1:9/'" + _STATIC
_REFRESH = (
    "[targets.a]\nurl='http://127.0.0.1:9/'\n[targets.a.token]\ntype='refresh_token'\n"
    "token_endpoint='https://as/t'\nclient_id='c'\n"
)


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("[listen\n", "(file)", "not valid TOML"),
        ("", "targets", "required"),
        ("[targets]\n", "targets", "at least 1 item"),
        ("[listen]\nport = 'x'\n" + _TARGET, "listen.port", "valid integer"),
        ("[listen]\nport = 70000\n" + _TARGET, "listen.port", "less than or equal to 65535"),
        ("[listen]\nport = 80.5\n" + _TARGET, "listen.port", "valid integer"),
        ("[listen]\nhost = '0.0.0.0'\n" + _TARGET, "listen.host", "loopback"),
        ("[listen]\nsecret = 'a/b'\n" + _TARGET, "listen.secret", "URL-safe"),
        ("[listen]\nbogus = 1\n" + _TARGET, "listen.bogus", "unknown key"),
        ("[limits]\nmax_body = 0\n" + _TARGET, "limits.max_body", "greater than or equal to 1"),
        ("[limits]\nmax_body = 1.5\n" + _TARGET, "limits.max_body", "valid integer"),
        ("[limits]\nread_timeout = nan\n" + _TARGET, "limits.read_timeout", "finite"),
        ("[limits]\nresponse_timeout = inf\n" + _TARGET, "limits.response_timeout", "finite"),
        ("[limits]\nconnect_timeout = 0\n" + _TARGET, "limits.connect_timeout", "greater than 0"),
        ("[limits]\nbogus = 1\n" + _TARGET, "limits.bogus", "unknown key"),
        ("[bogus]\n" + _TARGET, "bogus", "unknown key"),
        ("[targets.a]" + _STATIC, "targets.a.url", "required"),
        ("[targets.a]\nurl='ftp://h/'" + _STATIC, "targets.a.url", "http(s)"),
        ("[targets.a]\nurl='http://mcp.example/'" + _STATIC, "targets.a.url", "plain http"),
        (
            "[targets.a]\nurl='http://127.0.0.1/'\nallow_insecure_http = 'yes'" + _STATIC,
            "targets.a.allow_insecure_http",
            "valid boolean",
        ),
        ("[targets.a]\nurl='http://127.0.0.1/'\n", "targets.a.token", "required"),
        (
            "[targets.a]\nurl='http://127.0.0.1/'\n[targets.a.token]\nstatic = 1",
            "targets.a.token.type",
            "required",
        ),
        (
            "[targets.a]\nurl='http://127.0.0.1/'\n[targets.a.token]\ntype='magic'",
            "targets.a.token.type",
            "must be one of",
        ),
        (
            "[targets.a]\nurl='http://127.0.0.1/'\n[targets.a.token]\ntype='static'",
            "targets.a.token.token",
            "required",
        ),
        (_TARGET.replace("token='t'", "token='two words'"), "targets.a.token.token", "b64token"),
        (_TARGET + "\ntoken_env='FT_T'", "targets.a.token.token", "not both"),
        (
            _TARGET.replace("token='t'", "token_env='FT_UNSET_VAR'"),
            "targets.a.token.token_env",
            "FT_UNSET_VAR is not set",
        ),
        (_REFRESH, "targets.a.token.refresh_token", "required"),
        (_REFRESH + 'refresh_token="rt\\n2"', "targets.a.token.refresh_token", "RFC 6749"),
        (
            _REFRESH + "refresh_token='r'\nauth_method='jwt'",
            "targets.a.token.auth_method",
            "client_secret_basic",
        ),
        (
            _REFRESH + "refresh_token='r'\ndeadline=-1",
            "targets.a.token.deadline",
            "greater than 0",
        ),
        (
            _REFRESH + "refresh_token='r'\nmax_response_bytes=0",
            "targets.a.token.max_response_bytes",
            "greater than or equal to 1",
        ),
        (
            _REFRESH + "refresh_token='r'\nmax_retries=1.5",
            "targets.a.token.max_retries",
            "valid integer",
        ),
        (
            _REFRESH + "refresh_token='r'\nmax_retry_wait=nan",
            "targets.a.token.max_retry_wait",
            "finite",
        ),
        (
            _REFRESH + "refresh_token='r'\nrefresh_grace=-1",
            "targets.a.token.refresh_grace",
            "greater than or equal to 0",
        ),
        (
            _REFRESH.replace("https://as/t", "http://as.example/t") + "refresh_token='r'",
            "targets.a.token.token_endpoint",
            "plain http",
        ),
        (
            _REFRESH + "refresh_token='r'\nca_file='missing.pem'",
            "targets.a.token.ca_file",
            "no such file",
        ),
        (
            "[targets.a]\nurl='http://127.0.0.1/'\n[targets.a.token]\ntype='client_credentials'\n"
            "token_endpoint='https://as/t'\nclient_id='c'",
            "targets.a.token.client_secret",
            "required",
        ),
        (
            "[targets.a]\nurl='http://127.0.0.1/'\n[targets.a.token]\ntype='command'\ncommand=[]",
            "targets.a.token.command",
            "at least 1 item",
        ),
        (
            "[targets.a]\nurl='http://127.0.0.1/'\n[targets.a.token]\ntype='command'\n"
            "command=['x']\ntimeout=0",
            "targets.a.token.timeout",
            "greater than 0",
        ),
        (_TARGET + "\nextra=1", "targets.a.token.extra", "unknown key"),
        (
            "[targets._control]\nurl='http://127.0.0.1/'\n[targets._control.token]\n"
            "type='static'\ntoken='t'",
            "targets._control",
            "invalid target name",
        ),
        (
            "[matcher]\nfunction='nope_no_module:f'\n" + _TARGET,
            "matcher.function",
            "cannot import",
        ),
        ("[matcher]\nfunction='no_colon'\n" + _TARGET, "matcher.function", "module:function"),
        (
            "[matcher]\nfunction='m:f'\npatterns=['x']\n" + _TARGET,
            "matcher.function",
            "not both",
        ),
        ("[matcher]\npatterns=['(']\n" + _TARGET, "matcher.patterns[0]", "regular expression"),
        ("[matcher]\ninclude_default=false\n" + _TARGET, "matcher.include_default", "pattern"),
        (
            "[matcher]\nfunction='m:f'\ntool_errors=true\n" + _TARGET,
            "matcher.function",
            "not both",
        ),
        ("[matcher]\ntool_errors=1\n" + _TARGET, "matcher.tool_errors", "valid boolean"),
    ],
)
def test_bad_configs_name_file_key_and_reason(
    tmp_path: Path, text: str, field: str, reason: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    error = info.value
    message = str(error)
    assert "\n" not in message
    assert (error.source, error.field) == (str(path), field)
    assert error.reason is not None
    assert reason in error.reason
    assert message == f"{path}: {field}: {error.reason}"


def test_a_store_with_a_malformed_refresh_token_is_a_config_error(tmp_path: Path) -> None:
    store = tmp_path / "tokens.json"
    store.write_text('{"refresh_token": "rt\\r\\nX"}')
    path = tmp_path / "bad.toml"
    path.write_text(
        "[targets.a]\nurl='http://127.0.0.1:9/'\n[targets.a.token]\ntype='refresh_token'\n"
        f"token_endpoint='https://as/t'\nclient_id='c'\nstore='{store}'\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.field == "targets.a.token.store"
    assert "RFC 6749" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.toml")
    assert info.value.field == "(file)"
    assert "No such file" in str(info.value)


def test_tool_error_text_is_read_only_when_asked(tmp_path: Path) -> None:
    tool_error = {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"isError": True, "content": [{"type": "text", "text": "invalid token"}]},
    }
    default = _write(tmp_path, _TARGET)
    assert not load_config(default).matcher(tool_error)
    opted_in = _write(tmp_path, "[matcher]\ntool_errors = true\n" + _TARGET)
    matcher = load_config(opted_in).matcher
    assert matcher(tool_error)
    assert matcher({"error": {"code": "invalid_token", "message": "x"}})


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
        FakeMCPServer(
            authorization_server=auth, ssl_context=ca.server_ssl_context(), response_mode="json"
        ) as mcp,
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


def _key_file(tmp_path: Path) -> Path:
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "client-key.pem"
    path.write_bytes(private_pem(ec.generate_private_key(ec.SECP256R1())))
    return path


_CC = (
    "[targets.a]\nurl='http://127.0.0.1:9/'\n[targets.a.token]\ntype='client_credentials'\n"
    "token_endpoint='https://as.example/token'\nclient_id='c'\n"
)


def test_a_private_key_jwt_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = _key_file(tmp_path)
    path = _write(
        tmp_path,
        _CC + "auth_method='private_key_jwt'\nprivate_key_file='client-key.pem'\n"
        "issuer='https://as.example'\nsigning_alg='ES256'\n",
    )
    [target] = load_config(path).targets
    assert isinstance(target.source, ClientCredentialsSource)
    assert target.source.issuer == "https://as.example"
    # The same key as PEM text in an environment variable.
    monkeypatch.setenv("FT_KEY", key.read_text())
    path = _write(
        tmp_path,
        _REFRESH + "refresh_token='r'\nauth_method='private_key_jwt'\nprivate_key_env='FT_KEY'\n"
        "issuer='https://as.example'\n",
    )
    [target] = load_config(path).targets
    assert isinstance(target.source, RefreshTokenSource)


@pytest.mark.parametrize(
    ("extra", "field", "reason"),
    [
        ("private_key_file='client-key.pem'\n", "auth_method", 'needs "private_key_jwt"'),
        ("auth_method='private_key_jwt'\nissuer='https://as'\n", "private_key_file", "required"),
        (
            "auth_method='private_key_jwt'\nprivate_key_file='client-key.pem'\n",
            "issuer",
            "the audience of its assertions",
        ),
        (
            "auth_method='private_key_jwt'\nprivate_key_file='client-key.pem'\n"
            "private_key='x'\nissuer='https://as'\n",
            "private_key_file",
            "give the key once",
        ),
        (
            "auth_method='private_key_jwt'\nprivate_key_file='missing.pem'\nissuer='https://as'\n",
            "private_key_file",
            "cannot read the private key",
        ),
        (
            "auth_method='private_key_jwt'\nprivate_key_file='client-key.pem'\n"
            "signing_alg='RS256'\nissuer='https://as'\n",
            "private_key_file",
            "RS256 needs a rsa key",
        ),
        (
            "auth_method='private_key_jwt'\nprivate_key='not a key'\nissuer='https://as'\n",
            "private_key",
            "the key: not a PEM private key",
        ),
    ],
)
def test_private_key_jwt_errors_name_the_key(
    tmp_path: Path, extra: str, field: str, reason: str
) -> None:
    _key_file(tmp_path)
    path = _write(tmp_path, _CC + "client_secret='s'\n" + extra)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.field == f"targets.a.token.{field}"
    assert reason in caught.value.reason
    assert "PRIVATE KEY" not in str(caught.value)
