"""The benchmark script still runs end to end (tiny parameters; no figure is judged by speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.mark.timeout(180)
def test_benchmark_script_produces_the_table(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    markdown = tmp_path / "bench.md"
    argv = [
        sys.executable,
        str(SCRIPT),
        "--quick",
        "--rounds=1",
        "--duration=0.3",
        "--connections=2",
        "--open-streams=20",
        "--burst=10",
        "--soak-clients=10",
        "--soak-calls=20",
        "--harness-rounds=2",
        "--pytest-tests=2",
        "--catalogue-limit=1",
        f"--json={out}",
        f"--markdown={markdown}",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=170, check=False)
    assert done.returncode == 0, done.stderr[-4000:]

    header = done.stdout.splitlines()[0].split()
    assert header == ["figure", "direct", "proxied", "ratio", "target", "met"]
    assert "machine: " in done.stdout
    assert "placement: 4 processes" in done.stdout

    summary = json.loads(out.read_text())
    assert {"command", "machine", "params", "rows", "placement"} <= summary.keys()
    assert {"nproc", "cpu", "python"} <= summary["machine"].keys()
    rows = {row["figure"]: row for row in summary["rows"]}
    for row in rows.values():
        assert {"figure", "unit", "direct", "proxied", "ratio", "target", "met"} <= row.keys()
    expected = [
        "tools/call echo throughput (2 conns)",
        "tools/call latency p50 (1 conn)",
        "light upstream: tools/call throughput (2 conns)",
        "soak 10x20 calls, rotation every 1000: failed calls",
        "soak 10x20 calls, rotation every 100: failed calls",
        "SSE events/s (stream tool, pace 0, 8 conns)",
        "SSE per-event latency p99 (pace 2 ms)",
        "20 open SSE streams: proxy peak RSS",
        "10 calls on one rotation: token requests",
        "10 calls on one rotation: answered",
        "harness up+down per test (direct: fakes only)",
        "MCP handshake through the proxy, over aiohttp (direct: httpx's transport)",
        "pytest test with freshtoken_proxy (direct: plain test)",
        "pytest test with freshtoken_client (direct: plain test)",
        "first freshtoken_client test in a fresh process",
        "pytest test with freshtoken_client (under xdist -n 2) (direct: plain test)",
        "first freshtoken_client test in a fresh process (under xdist -n 2)",
    ]
    for figure in expected:
        assert figure in rows, sorted(rows)
        assert rows[figure]["proxied"] is not None, figure
    # Counts, not speeds: the work was really done through the proxy.
    assert rows["10 calls on one rotation: token requests"]["proxied"] == 1
    assert rows["10 calls on one rotation: answered"]["proxied"] == 10
    assert "20/20 opened" in rows["20 open SSE streams: proxy peak RSS"]["note"]
    assert summary["json_errors"] == 0
    assert summary["light_errors"] == 0
    # 200 calls: no rotation at every 1000 calls, two at every 100 (the AS saw the grants).
    quiet = rows["soak 10x20 calls, rotation every 1000: failed calls"]
    assert (quiet["proxied"], quiet["met"]) == (0, True)
    assert quiet["note"].startswith("0 rotations, 0 token requests")
    rotated = rows["soak 10x20 calls, rotation every 100: failed calls"]
    assert rotated["note"].startswith("2 rotations, ")
    assert any(figure.startswith("scenario catalogue") for figure in rows)
    assert markdown.read_text().startswith("| figure | direct | proxied | ratio | target | met |")
