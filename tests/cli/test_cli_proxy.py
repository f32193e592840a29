"""``freshtoken proxy --config FILE`` as a real subprocess."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from freshtoken.fakes import FakeAuthorizationServer, FakeMCPServer


async def _start(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "freshtoken",
        "proxy",
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
        FakeMCPServer(authorization_server=auth) as mcp,
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
        ("[targets.a]\nurl = 'http://127.0.0.1:9/'\n", "targets.a.token.type"),
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
