"""``freshtoken login`` as a real subprocess: exit codes, one-line errors, --status, --logout."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from freshtoken.fakes import FakeAuthorizationServer, FakeMCPServer


async def _login(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "freshtoken",
        "login",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_login_status_and_logout(tmp_path: Path) -> None:
    store = tmp_path / "fake.json"
    async with (
        FakeAuthorizationServer() as auth,
        FakeMCPServer(authorization_server=auth) as mcp,
    ):
        code, out, err = await _login(mcp.url, "--store", str(store), "--headless")
        assert (code, err) == (0, "")
        stored = json.loads(store.read_text())
        access, refresh = stored["access_token"], stored["refresh_token"]

        code, status, err = await _login("--status", "--store", str(store))
        assert code == 0, err
        assert status.startswith(f"{mcp.url} client {stored['login']['client_id']} (dynamic)")
        for secret in (access, refresh, stored["login"]["client_secret"]):
            assert secret not in out + status
        assert "expires 20" in status

        code, out, err = await _login("--logout", "--store", str(store))
        assert code == 0, err
        assert out == f"{store}: logged out (revoked, store {store} deleted)\n"
        assert not store.exists()
        # RFC 7009: revoking the refresh token revoked the grant's access token too.
        assert auth.validate_access_token(access) is None

        code, out, _ = await _login("--status", "--store", str(store))
        assert (code, out) == (0, f"{store}: not logged in\n")


async def test_status_of_a_config_lists_every_target(tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(
        '[targets.a]\nurl = "https://mcp.example/a"\n'
        '[targets.a.token]\ntype = "login"\nstore = "a.json"\n'
        '[targets.b]\nurl = "https://mcp.example/b"\n'
        '[targets.b.token]\ntype = "static"\ntoken = "t"\n'
    )
    code, out, err = await _login("--status", "--config", str(config))
    assert code == 0, err
    assert out.splitlines() == [
        f"a: {tmp_path / 'a.json'}: not logged in",
        'b: not a login target (freshtoken login needs type = "login" (or "refresh_token" '
        "with a store), not 'static')",
    ]


async def test_consent_denied_exits_5_with_one_line(tmp_path: Path) -> None:
    async with (
        FakeAuthorizationServer() as auth,
        FakeMCPServer(authorization_server=auth) as mcp,
    ):
        auth.core.deny_consent = True
        code, out, err = await _login(mcp.url, "--store", str(tmp_path / "s.json"), "--headless")
    assert code == 5
    assert out == ""
    assert err == (
        "freshtoken login: the authorization server refused: access_denied: the resource "
        "owner denied the request\n"
    )
    assert not (tmp_path / "s.json").exists()


async def test_no_browser_prints_the_url_and_times_out_with_exit_7(tmp_path: Path) -> None:
    async with (
        FakeAuthorizationServer() as auth,
        FakeMCPServer(authorization_server=auth) as mcp,
    ):
        code, out, err = await _login(
            mcp.url, "--store", str(tmp_path / "s.json"), "--no-browser", "--timeout", "0.5"
        )
        endpoint, resource = auth.authorization_endpoint, mcp.url
    assert (code, out) == (7, "")
    lines = err.splitlines()
    assert lines[0] == "Open this URL in a browser to authorize freshtoken:"
    url = urlsplit(lines[1])
    assert f"{url.scheme}://{url.netloc}{url.path}" == endpoint
    query = parse_qs(url.query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["resource"] == [resource]
    assert query["redirect_uri"][0].startswith("http://127.0.0.1:")
    assert lines[2:] == ["freshtoken login: no redirect reached the loopback listener within 0.5 s"]


async def test_a_server_without_authorization_exits_3(tmp_path: Path) -> None:
    async with FakeMCPServer() as mcp:  # auth off: answers without a token
        code, _, err = await _login(mcp.url, "--store", str(tmp_path / "s.json"), "--headless")
    assert code == 3
    assert err.startswith("freshtoken login: no authorization server found: ")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope", "--config", "{config}"], "{config}: targets.nope: no such target"),
        (
            ["a", "--config", "{config}", "--client-id", "x"],
            "freshtoken login: --client-id: only with --store",
        ),
        (["ftp://x", "--store", "s.json"], "freshtoken login: URL: not an http(s) URL"),
        (["--config", "{config}"], "name the TARGET to log in to"),
        (
            [
                "https://x/mcp",
                "--store",
                "s.json",
                "--client-id",
                "c",
                "--private-key-file",
                "{config}",
            ],
            "freshtoken login: --private-key-file: {config}: not a PEM private key",
        ),
        (
            ["https://x/mcp", "--store", "s.json", "--signing-alg", "ES256"],
            "freshtoken login: --signing-alg: only with --private-key-file",
        ),
    ],
    ids=[
        "unknown-target",
        "store-only-flag",
        "bad-url",
        "no-target",
        "not-a-key",
        "alg-without-key",
    ],
)
async def test_usage_errors_exit_2(tmp_path: Path, argv: list[str], message: str) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(
        '[targets.a]\nurl = "https://mcp.example/a"\n'
        '[targets.a.token]\ntype = "login"\nstore = "a.json"\n'
    )
    code, out, err = await _login(*(a.format(config=config) for a in argv))
    assert code == 2
    assert out == ""
    assert message.format(config=config) in err
    assert err.count("\n") == 1


def _readme_login_section() -> str:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Logging in: `freshtoken login`\n")
    return text[start : text.index("\n## ", start + 1)]


def test_readme_login_section_matches_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from freshtoken.cli._login import EXIT_CODES
    from freshtoken.proxy import LoginTarget, load_login_targets

    section = _readme_login_section()
    [toml] = re.findall(r"```toml\n(.*?)```", section, flags=re.DOTALL)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "proxy.toml").write_text(toml)
    [(name, target)] = load_login_targets(tmp_path / "proxy.toml").items()
    assert name == "linear"
    assert isinstance(target, LoginTarget)
    assert target.store == tmp_path / ".config" / "freshtoken" / "linear.json"
    codes = [int(code) for code in re.findall(r"^\| (\d) \| ", section, flags=re.MULTILINE)]
    assert codes == sorted(EXIT_CODES)
    # Every conformance scenario is listed with its result.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))
    try:
        from test_login_conformance import PASSING, REFUSED
    finally:
        sys.path.pop(0)
    for scenario in [*PASSING, *REFUSED]:
        short = scenario.removeprefix("auth/token-endpoint-auth")
        assert scenario in section or short in section, scenario
