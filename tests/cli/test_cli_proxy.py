"""``freshtoken proxy --config FILE`` as a real subprocess."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from freshtoken.fakes import FakeAuthorizationServer, FakeMCPServer


async def _start(config: Path, *flags: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "freshtoken",
        "proxy",
        *flags,
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_serves_the_configured_targets_until_signalled(
    tmp_path: Path, signum: signal.Signals
) -> None:
    async with (
        FakeAuthorizationServer() as auth,
        FakeMCPServer(authorization_server=auth, response_mode="json") as mcp,
    ):
        pair = auth.issue_tokens(resource=mcp.url)
        config = tmp_path / "proxy.toml"
        config.write_text(
            f"""
[targets.fake]
url = "{mcp.url}"
[targets.fake.token]
type = "refresh_token"
token_endpoint = "{auth.token_endpoint}"
client_id = "{auth.client_id}"
client_secret = "{auth.client_secret}"
refresh_token = "{pair.refresh_token}"
resource = "{mcp.url}"

[targets.other]
url = "{mcp.url}"
[targets.other.token]
type = "static"
token = "{pair.access_token}"
"""
        )
        proc = await _start(config)
        try:
            assert proc.stdout is not None
            lines = [
                (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().split()
                for _ in range(2)
            ]
            urls = dict(lines)
            assert set(urls) == {"fake", "other"}
            assert all(
                u.startswith("http://127.0.0.1:") and u.endswith("/mcp") for u in urls.values()
            )
            async with aiohttp.ClientSession() as http:
                for url in urls.values():
                    resp = await http.post(
                        url,
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
            proc.send_signal(signum)
            assert await asyncio.wait_for(proc.wait(), 20) == 0
            _, stderr = await proc.communicate()
            assert pair.access_token not in stderr.decode()
            assert pair.refresh_token not in stderr.decode()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[targets.a]\nurl = 'http://127.0.0.1:9/'\n", "targets.a.token"),
        ("[limits]\nresponse_timeout = -1\n", "limits.response_timeout"),
        ("[targets.a\n", ""),
        ("[listen]\nport = 70000\n", "listen.port"),
    ],
)
async def test_bad_config_exits_2_with_one_line(tmp_path: Path, text: str, key: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    proc = await _start(config)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert stdout == b""
    lines = stderr.decode().splitlines()
    assert len(lines) == 1
    assert str(config) in lines[0]
    assert key in lines[0]


def _logger_names(stderr: str) -> set[str]:
    # "%(asctime)s %(levelname)s %(name)s %(message)s": the date and time are two words.
    names = set()
    for line in stderr.splitlines():
        parts = line.split(" ", 4)
        if len(parts) == 5 and parts[2] in ("DEBUG", "INFO", "WARNING", "ERROR"):
            names.add((parts[2], parts[3].split(".")[0]))
    return names


@pytest.mark.parametrize("flags", [(), ("-v",), ("-vv",)], ids=["quiet", "-v", "-vv"])
async def test_verbosity_levels(tmp_path: Path, flags: tuple[str, ...]) -> None:
    async with (
        FakeAuthorizationServer() as auth,
        FakeMCPServer(authorization_server=auth, response_mode="json") as mcp,
    ):
        pair = auth.issue_tokens(resource=mcp.url)
        config = tmp_path / "proxy.toml"
        config.write_text(
            f"""
[targets.fake]
url = "{mcp.url}"
[targets.fake.token]
type = "refresh_token"
token_endpoint = "{auth.token_endpoint}"
client_id = "{auth.client_id}"
client_secret = "{auth.client_secret}"
refresh_token = "{pair.refresh_token}"
resource = "{mcp.url}"
"""
        )
        proc = await _start(config, *flags)
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            _, url = line.decode().split()
            async with aiohttp.ClientSession() as http:
                resp = await http.post(
                    url,
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
            assert len(auth.token_requests_seen("refresh_token")) == 1
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 20)
            assert proc.returncode == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    stderr = err.decode()
    names = _logger_names(stderr)
    debug_from = {name for level, name in names if level == "DEBUG"}
    if not flags:
        assert debug_from == set()
    elif flags == ("-v",):
        assert debug_from == {"freshtoken"}
    else:
        assert "freshtoken" in debug_from
        assert "httpcore" in debug_from
    # Whatever the verbosity: no token, client secret or capability secret in the log.
    capability = url.split("/")[3]
    for secret in (pair.access_token, pair.refresh_token, auth.client_secret, capability):
        assert secret not in stderr
