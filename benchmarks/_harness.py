"""Benchmark process: what the harness costs a test suite.

``updown`` times the per-test fixture work (fake AS + fake MCP server, optionally + proxy, up and
down); ``handshake`` the MCP handshake ``freshtoken_client`` does; ``catalogue`` times the whole scenario catalogue against the proxy through the runner API.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _worker import command_loop

from freshtoken import ManualClock, Timeline
from freshtoken.fakes import FakeAuthorizationServer, FakeMCPServer
from freshtoken.proxy import Proxy, StaticTokenSource


async def _once(with_proxy: bool) -> float:
    start = time.perf_counter()
    clock = ManualClock()
    timeline = Timeline(clock)
    async with (
        FakeAuthorizationServer(clock=clock, timeline=timeline) as authorization,
        FakeMCPServer(authorization_server=authorization) as mcp,
    ):
        if with_proxy:
            token = authorization.issue_tokens().access_token
            async with Proxy(timeline=timeline) as proxy:
                proxy.register("mcp", mcp.url, StaticTokenSource(token))
    return time.perf_counter() - start


async def updown(rounds: int, with_proxy: bool) -> list[float]:
    """Seconds per start+stop cycle, ``rounds`` times (after one untimed warm-up)."""
    await _once(with_proxy)
    return [await _once(with_proxy) for _ in range(rounds)]


async def handshake(rounds: int) -> dict[str, list[float]]:
    """Seconds per MCP handshake (initialize + initialized) through the proxy of a fresh
    harness, the way ``freshtoken_client`` does it (over aiohttp, through httpx-aiohttp's
    transport) and over httpx's own transport (no keep-alive), rounds interleaved."""
    import httpx
    from httpx_aiohttp import AiohttpTransport

    from freshtoken.scenarios import Harness, McpClient

    figures: dict[str, list[float]] = {"httpx": [], "aiohttp": []}
    for index in range(rounds + 1):
        for kind in figures:
            async with Harness() as harness:
                client = McpClient(
                    harness.proxy_url,
                    timeline=harness.timeline,
                    verify=harness.verify,
                    limits=httpx.Limits(max_keepalive_connections=0),
                )
                start = time.perf_counter()
                if kind == "httpx":
                    outcome = await client.initialize()
                else:
                    transport = AiohttpTransport(verify=harness.verify, trust_env=False)
                    async with httpx.AsyncClient(
                        transport=transport, timeout=client.http_timeout
                    ) as http:
                        with client.sending_through(http):
                            outcome = await client.initialize()
                elapsed = time.perf_counter() - start
                await client.aclose()
            if outcome.status != 200:
                raise RuntimeError(f"handshake over {kind} failed: {outcome}")
            if index:  # the first round warms up both
                figures[kind].append(elapsed)
    return figures


async def catalogue(limit: int | None, scenario_timeout: float) -> dict[str, Any]:
    """Run the built-in catalogue (its first ``limit`` scenarios) on the proxy subject.

    Through the runner API when ``freshtoken.scenarios`` exports it, else through
    ``freshtoken scenarios run`` (whole catalogue only), else report it unavailable.
    """
    try:
        scenarios: Any = importlib.import_module("freshtoken.scenarios")
        load, run = scenarios.load_catalogue, scenarios.run_scenario
    except (ImportError, AttributeError) as exc:
        if limit is None and importlib.util.find_spec("freshtoken.cli._scenarios") is not None:
            return await _catalogue_cli(scenario_timeout * 30)
        return {"available": False, "reason": f"no scenario runner API yet ({exc})"}
    chosen = load()[:limit] if limit is not None else load()
    failed: list[str] = []
    start = time.perf_counter()
    for scenario in chosen:
        try:
            result = await asyncio.wait_for(run(scenario, "proxy"), scenario_timeout)
        except TimeoutError:
            failed.append(f"{scenario.name} (timed out after {scenario_timeout:g} s)")
            continue
        if not result.passed:
            failed.append(scenario.name)
    return {
        "available": True,
        "how": "runner API (freshtoken.scenarios.run_scenario)",
        "scenarios": len(chosen),
        "failed": failed,
        "elapsed": time.perf_counter() - start,
    }


async def _catalogue_cli(timeout: float) -> dict[str, Any]:
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "freshtoken",
        "scenarios",
        "run",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(timeout):
            code = await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"available": False, "reason": f"freshtoken scenarios run: over {timeout:g} s"}
    return {
        "available": True,
        "how": "freshtoken scenarios run (including interpreter start-up)",
        "scenarios": None,
        "failed": [] if code == 0 else [f"exit status {code}"],
        "elapsed": time.perf_counter() - start,
    }


_FIXTURE_TESTS = """
import os
import pytest

N = int(os.environ["FRESHTOKEN_BENCH_N"])


@pytest.mark.parametrize("i", range(N))
async def test_proxy(i, freshtoken_proxy, freshtoken_mcp_url):
    assert freshtoken_mcp_url


@pytest.mark.parametrize("i", range(N))
async def test_client(i, freshtoken_client):
    assert freshtoken_client.session_id


@pytest.mark.parametrize("i", range(N))
async def test_plain(i):
    assert i >= 0
"""

# pytest's own per-test timings (setup + call + teardown), at full precision: JUnit XML rounds
# them to milliseconds, too coarse for a 5 ms target.
_TIMING_PLUGIN = """
import json, os

_DONE = {}


def pytest_runtest_logreport(report):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    _DONE.setdefault(report.nodeid, [worker, 0.0])[1] += report.duration


def pytest_sessionfinish(session):
    out = os.environ["FRESHTOKEN_BENCH_TIMINGS"] + "." + os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(out, "w") as f:
        json.dump(list(_DONE.values()), f)
"""

_KINDS = ("plain", "proxy", "client")


async def pytest_cost(tests: int, rounds: int, workers: int = 0) -> dict[str, list[float]]:
    """Seconds per test (setup + call + teardown): medians per run of plain tests, tests with
    ``freshtoken_proxy`` and tests with ``freshtoken_client``; and ``first``: the first
    ``freshtoken_client`` test of each fresh process (each worker with ``workers``), which pays
    for loading the harness and starting the fixtures' loop, with bytecode already cached.

    pytest itself times every test (its reports' durations, read by a small conftest);
    interpreter start-up and collection, which dwarf one test and vary from run to run, never
    enter the figures.
    """
    figures: dict[str, list[float]] = {kind: [] for kind in (*_KINDS, "first")}
    with tempfile.TemporaryDirectory() as tmp:
        await asyncio.to_thread(Path(tmp, "test_bench_fixtures.py").write_text, _FIXTURE_TESTS)
        await asyncio.to_thread(Path(tmp, "conftest.py").write_text, _TIMING_PLUGIN)
        # Untimed: compiles (and assertion-rewrites) what the runs import, as a first run would.
        await _pytest(tmp, "client", 1, workers)
        for _ in range(rounds):
            for kind in _KINDS:
                cases = await _pytest(tmp, kind, tests, workers)
                durations = [seconds for _, seconds in cases]
                if kind == "client":
                    firsts = _first_per_worker(cases)
                    figures["first"].extend(firsts)
                    # The first tests stand apart: they are the "first use" figure.
                    durations = durations[len(firsts) :] if len(cases) > len(firsts) else durations
                figures[kind].append(statistics.median(durations))
    return figures


def _environment(n: int) -> dict[str, str]:
    # Bytecode is cached as on a developer's machine (a fresh process, not a fresh install).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "FRESHTOKEN_BENCH_N": str(n)}


def _first_per_worker(cases: list[tuple[str, float]]) -> list[float]:
    first: dict[str, float] = {}
    for worker, seconds in cases:
        first.setdefault(worker, seconds)
    return list(first.values())


async def _pytest(directory: str, kind: str, n: int, workers: int) -> list[tuple[str, float]]:
    """(worker, seconds) per test, in each worker's running order."""
    timings = Path(directory, f"timings-{kind}")
    for old in await asyncio.to_thread(_parts, timings):
        await asyncio.to_thread(old.unlink)
    parallel = ["-n", str(workers)] if workers else ["-p", "no:xdist"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *parallel,
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "-k",
        f"test_{kind}",
        "test_bench_fixtures.py",
        cwd=directory,
        env={**_environment(n), "FRESHTOKEN_BENCH_TIMINGS": str(timings)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"pytest with {n} {kind} tests failed:\n{output.decode()[-2000:]}")
    cases: list[tuple[str, float]] = []
    for part in await asyncio.to_thread(_parts, timings):
        if part.suffix == ".main" and workers:
            continue  # the controller of an xdist run runs no test
        text = await asyncio.to_thread(part.read_text)
        cases.extend((worker, float(seconds)) for worker, seconds in json.loads(text))
    return cases


def _parts(timings: Path) -> list[Path]:
    # One file per process that ran tests: "<timings>.main", or "<timings>.gw0", ".gw1", ...
    return sorted(timings.parent.glob(f"{timings.name}.*"))


async def main() -> None:
    await command_loop(
        {},
        {
            "updown": updown,
            "handshake": handshake,
            "catalogue": catalogue,
            "pytest_cost": pytest_cost,
        },
    )


if __name__ == "__main__":
    asyncio.run(main())
