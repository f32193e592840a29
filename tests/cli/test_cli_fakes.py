"""``freshtoken fakes`` as a real subprocess: one JSON line, working servers, clean exit on a signal."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
from typing import Any

import httpx
import pytest

from freshtoken.cli import main


def start(*flags: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "freshtoken", "fakes", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError(proc.communicate(timeout=10)[1])
    return proc, json.loads(line)


def stop(proc: subprocess.Popen[str], sig: int) -> None:
    proc.send_signal(sig)
    try:
        _, stderr = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr


def initialize(client: httpx.Client, info: dict[str, Any], token: str | None) -> httpx.Response:
    headers = {"Accept": "application/json, text/event-stream"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "cli-test", "version": "1"},
        },
    }
    return client.post(info["mcp_url"], json=body, headers=headers)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_fakes_serves_and_stops_cleanly(tls: bool, sig: int) -> None:
    proc, info = start(*(["--tls"] if tls else []), "--access-ttl", "60", "--no-rotation")
    try:
        expected = {
            "mcp_url",
            "as_metadata_url",
            "token_endpoint",
            "client_id",
            "client_secret",
            "refresh_token",
            "access_token",
            "as_control_url",
            "mcp_control_url",
        }
        assert expected <= info.keys()
        assert ("ca_path" in info) is tls
        assert info["mcp_url"].startswith("https://" if tls else "http://")
        verify: Any = ssl.create_default_context(cafile=info["ca_path"]) if tls else True
        with httpx.Client(verify=verify, timeout=10) as client:
            assert initialize(client, info, info["access_token"]).status_code == 200
            assert initialize(client, info, None).status_code == 401
            refreshed = client.post(
                info["token_endpoint"],
                data={"grant_type": "refresh_token", "refresh_token": info["refresh_token"]},
                auth=(info["client_id"], info["client_secret"]),
            )
            assert refreshed.status_code == 200
            assert refreshed.json()["expires_in"] == 60
            assert (
                "refresh_token" not in refreshed.json()
                or refreshed.json()["refresh_token"] == info["refresh_token"]
            )
            assert initialize(client, info, refreshed.json()["access_token"]).status_code == 200
            fault = client.post(f"{info['mcp_control_url']}/faults", json={"action": "status-5xx"})
            assert fault.json()["added"] == 1
            assert initialize(client, info, info["access_token"]).status_code == 503
    finally:
        stop(proc, sig)


def test_fakes_auth_off_and_stateless() -> None:
    proc, info = start(
        "--auth-off",
        "--protocol-version",
        "2026-07-28",
        "--response-mode",
        "sse",
        "--auth-failure-style",
        "200-jsonrpc",
    )
    try:
        assert info["protocol_version"] == "2026-07-28"
        meta = {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        headers = {
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": "tools/call",
            "Mcp-Name": "whoami",
        }
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "whoami", "arguments": {}, "_meta": meta},
        }
        with httpx.Client(timeout=10) as client:
            response = client.post(info["mcp_url"], json=body, headers=headers)
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "anonymous" in response.text
    finally:
        stop(proc, signal.SIGTERM)


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["--access-ttl", "0"], "freshtoken fakes: access_ttl: Input should be greater than 0"),
        (["--access-ttl", "nan"], "freshtoken fakes: access_ttl: Input should be a finite number"),
        (["--grace", "-1"], "freshtoken fakes: grace_period: Input should be greater than or"),
    ],
)
def test_bad_settings_exit_2_with_one_line(
    flags: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fakes", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(error)
    assert len(err.splitlines()) == 1


def test_a_long_run_keeps_only_the_newest_timeline_events() -> None:
    """Answers are SSE by default, and the timeline is a ring buffer: stats stay cheap and the
    process small however long it runs (here a bounded loop of 150 requests)."""
    proc, info = start("--auth-off", "--max-events", "50")
    try:
        with httpx.Client(timeout=10) as client:
            first = initialize(client, info, None)
            assert first.headers["content-type"].startswith("text/event-stream")
            for _ in range(149):
                assert initialize(client, info, None).status_code == 200
            stats = client.get(f"{info['mcp_control_url']}/stats").json()
        assert stats["requests"] == 150
        assert stats["timeline_events"] == 50
    finally:
        stop(proc, signal.SIGTERM)


def test_max_events_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fakes", "--max-events", "0"]) == 2
    assert capsys.readouterr().err.strip() == (
        "freshtoken fakes: max_events: must be at least 1, got 0"
    )
