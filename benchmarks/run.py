"""What the proxy and the harness cost, as ratios against the direct path.

    python benchmarks/run.py            # the full run (about two minutes)
    python benchmarks/run.py --quick    # a short run, noisier

Everything runs on loopback, in separate processes: the fake AS + fake MCP server in one, a
light upstream (``benchmarks/_light.py``) in another, the proxy in a third, the load generator
(``benchmarks/_load.py``, a raw-asyncio HTTP/1.1 client) in a fourth, nginx (when installed) with
a static bearer in front of the light upstream for its row, and the harness timings last, once
the others are gone. Each figure is the
median over repeated rounds, direct and proxied rounds interleaved so drift hits both alike.
The table compares them with the targets in the design; ``--json`` writes every figure and
``--markdown`` the table as the README shows it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _nginx
import _profile
from _worker import Worker


@dataclass
class Params:
    """How much of everything to run."""

    rounds: int = 5
    duration: float = 3.0
    warmup: float = 0.5
    connections: int = 32
    latency_duration: float = 1.5
    sse_connections: int = 8
    sse_events: int = 100
    latency_streams: int = 5
    latency_events: int = 40
    latency_pace: float = 0.002
    open_streams: int = 1000
    burst: int = 500
    soak_clients: int = 500
    soak_calls: int = 20
    harness_rounds: int = 30
    pytest_tests: int = 100
    catalogue_limit: int | None = None
    pin: bool = False
    profile: Path | None = None


QUICK = Params(
    rounds=2,
    duration=1.0,
    warmup=0.25,
    latency_duration=0.5,
    sse_events=50,
    latency_streams=2,
    harness_rounds=10,
    pytest_tests=40,
)


@dataclass
class Row:
    """One line of the table: a figure measured on the direct path and through the proxy."""

    figure: str
    unit: str
    direct: float | None
    proxied: float | None
    target: str
    met: bool | None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.direct is None or self.proxied is None or self.direct == 0:
            return None
        return self.proxied / self.direct


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def nearest_rank(samples: Sequence[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.partition(":")[2].strip()
            break
    import aiohttp

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "load_average": os.getloadavg()[0],
    }


class Bench:
    """Runs every measurement; ``log`` shows progress on stderr."""

    def __init__(self, params: Params, log: Callable[[str], None]) -> None:
        self.p = params
        self.log = log
        self.rows: list[Row] = []
        self.extra: dict[str, Any] = {}

    def run(self) -> None:
        with (
            Worker("servers", "_servers.py") as servers,
            Worker("light upstream", "_light.py") as light,
        ):
            info = servers.info
            secrets = {"refresh_token": info["refresh_token"], "light": light.info["token"]}
            with (
                Worker(
                    "proxy",
                    "_proxy_child.py",
                    "--upstream",
                    info["mcp_url"],
                    "--light-upstream",
                    light.info["url"],
                    "--token-endpoint",
                    info["token_endpoint"],
                    "--client-id",
                    info["client_id"],
                    # One argument: a random secret may start with "-".
                    f"--client-secret={info['client_secret']}",
                    secret_input=json.dumps(secrets),
                ) as proxy,
                Worker("load generator", "_load.py") as load,
            ):
                self._place(servers, light, proxy, load)
                load.call(
                    "connect", name="direct", url=info["mcp_url"], bearer=info["access_token"]
                )
                load.call("connect", name="proxied", url=proxy.info["url"])
                load.call(
                    "connect_plain",
                    name="light-direct",
                    url=light.info["url"],
                    bearer=light.info["token"],
                )
                load.call("connect_plain", name="light-proxied", url=proxy.info["light_url"])
                if self.p.profile is not None:
                    self._profile(proxy, load, self.p.profile)
                self._json(servers, proxy, load)
                self._light(light, proxy, load)
                self._sse(servers, proxy, load)
                self._open_streams(servers, proxy, load)
                # Last: a rotation kills the direct client's static bearer.
                self._rotation(servers, load)
                self._soak(servers, load)
        self._harness()

    def _place(self, servers: Worker, light: Worker, proxy: Worker, load: Worker) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        if self.p.pin and len(cpus) >= 2:
            servers.pin({cpus[0]})
            light.pin({cpus[0]})
            proxy.pin({cpus[1]})
            placement = (
                f"the upstreams pinned to CPU {cpus[0]}, proxy pinned to CPU {cpus[1]}, "
                "load generator (and nginx) unpinned"
            )
        else:
            placement = f"no pinning: the OS schedules the processes on {len(cpus)} CPUs"
        self.extra["placement"] = (
            f"4 processes: fake AS + fake MCP (pid {servers.pid}), light upstream "
            f"(pid {light.pid}), proxy (pid {proxy.pid}), load generator (pid {load.pid}), "
            f"plus nginx for its row; {placement}"
        )

    def _profile(self, proxy: Worker, load: Worker, directory: Path) -> None:
        """py-spy on the proxy during proxied tools/call loads and an SSE load."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, command, args in (
            ("json", "json_load", {"connections": self.p.connections}),
            ("light", "json_load", {"connections": self.p.connections}),
            (
                "sse",
                "sse_load",
                {"connections": self.p.sse_connections, "count": self.p.sse_events},
            ),
        ):
            self.log(f"profiling the proxy under the {name} load")
            output = directory / f"proxy-{name}.folded"
            recorder = _profile.start(proxy.pid, self.p.duration, output)
            target = "light-proxied" if name == "light" else "proxied"
            load.call(command, target=target, duration=self.p.duration, warmup=0.0, **args)
            recorder.wait(timeout=self.p.duration + 30)
            report = _profile.summarise(output)
            (directory / f"proxy-{name}.txt").write_text(report + "\n")
            self.extra[f"profile_{name}"] = str(directory / f"proxy-{name}.txt")

    def _rounds(
        self,
        what: str,
        command: str,
        servers: Worker,
        proxy: Worker,
        load: Worker,
        **args: Any,
    ) -> dict[str, list[dict[str, Any]]]:
        """Interleaved direct/proxied rounds of a load command, with each process's CPU cost.

        ``*_us`` is CPU microseconds per unit of work (request or event) in that process:
        unlike throughput on a shared machine, it does not depend on who else is running.
        """
        runs: dict[str, list[dict[str, Any]]] = {"direct": [], "proxied": []}
        for round_ in range(self.p.rounds):
            for target in ("direct", "proxied"):
                self.log(f"{what}, {target}, round {round_ + 1}/{self.p.rounds}")
                before = servers.cpu_seconds(), proxy.cpu_seconds()
                result = load.call(command, target=target, **args)
                units = max(1, result["total"])
                result["servers_us"] = (servers.cpu_seconds() - before[0]) / units * 1e6
                result["proxy_us"] = (proxy.cpu_seconds() - before[1]) / units * 1e6
                # Every unit passes through the generator, the measured ones in "elapsed".
                measured = result.get("requests", result.get("events", 0))
                result["load_us"] = result["cpu"] * result["elapsed"] / max(1, measured) * 1e6
                runs[target].append(result)
                servers.call("clear")
        return runs

    def _cpu_rows(self, runs: dict[str, list[dict[str, Any]]], unit: str) -> None:
        def med(key: str, target: str) -> float:
            return median([r[key] for r in runs[target]])

        self.rows.append(
            Row(
                f"  CPU per {unit}: fake AS + MCP process",
                "us",
                med("servers_us", "direct"),
                med("servers_us", "proxied"),
                "-",
                None,
            )
        )
        self.rows.append(
            Row(
                f"  CPU per {unit}: proxy process",
                "us",
                None,
                med("proxy_us", "proxied"),
                "-",
                None,
            )
        )
        self.rows.append(
            Row(
                f"  CPU per {unit}: load generator",
                "us",
                med("load_us", "direct"),
                med("load_us", "proxied"),
                "-",
                None,
            )
        )

    def _json(self, servers: Worker, proxy: Worker, load: Worker) -> None:
        p = self.p
        runs = self._rounds(
            "tools/call throughput",
            "json_load",
            servers,
            proxy,
            load,
            connections=p.connections,
            duration=p.duration,
            warmup=p.warmup,
        )
        latency = self._rounds(
            "tools/call latency (1 connection)",
            "json_load",
            servers,
            proxy,
            load,
            connections=1,
            duration=p.latency_duration,
            warmup=p.warmup / 2,
        )

        def med(data: dict[str, list[dict[str, Any]]], key: str, target: str) -> float:
            return median([r[key] for r in data[target]])

        self.extra["json_errors"] = sum(
            r["errors"] for rs in (*runs.values(), *latency.values()) for r in rs
        )
        rps_d, rps_p = med(runs, "rps", "direct"), med(runs, "rps", "proxied")
        self.rows.append(
            Row(
                f"tools/call echo throughput ({p.connections} conns)",
                "req/s",
                rps_d,
                rps_p,
                ">= 0.6x direct",
                rps_p >= 0.6 * rps_d,
            )
        )
        self._cpu_rows(runs, "call")
        p50_d, p50_p = med(latency, "p50_ms", "direct"), med(latency, "p50_ms", "proxied")
        self.rows.append(
            Row(
                "tools/call latency p50 (1 conn)",
                "ms",
                p50_d,
                p50_p,
                "<= +1 ms added",
                p50_p - p50_d <= 1.0,
            )
        )
        self.rows.append(
            Row(
                "tools/call latency p99 (1 conn)",
                "ms",
                med(latency, "p99_ms", "direct"),
                med(latency, "p99_ms", "proxied"),
                "-",
                None,
            )
        )
        for q in ("p50", "p99"):
            self.rows.append(
                Row(
                    f"tools/call latency {q} ({p.connections} conns)",
                    "ms",
                    med(runs, f"{q}_ms", "direct"),
                    med(runs, f"{q}_ms", "proxied"),
                    "-",
                    None,
                )
            )

    def _light(self, light: Worker, proxy: Worker, load: Worker) -> None:
        """tools/call against the light upstream: direct, through the proxy, through nginx."""
        p = self.p
        executable = _nginx.available()
        with contextlib.ExitStack() as stack:
            targets = ["light-direct", "light-proxied"]
            nginx: _nginx.Nginx | None = None
            if executable is not None:
                nginx = stack.enter_context(_nginx.Nginx(light.info["url"], light.info["token"]))
                load.call("connect_plain", name="light-nginx", url=nginx.url)
                targets.append("light-nginx")
            runs: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
            for round_ in range(p.rounds):
                for target in targets:
                    self.log(f"light upstream, {target}, round {round_ + 1}/{p.rounds}")
                    before = (
                        light.cpu_seconds(),
                        proxy.cpu_seconds(),
                        nginx.cpu_seconds() if nginx is not None else 0.0,
                    )
                    result = load.call(
                        "json_load",
                        target=target,
                        connections=p.connections,
                        duration=p.duration,
                        warmup=p.warmup,
                    )
                    units = max(1, result["total"])
                    result["upstream_us"] = (light.cpu_seconds() - before[0]) / units * 1e6
                    result["proxy_us"] = (proxy.cpu_seconds() - before[1]) / units * 1e6
                    if nginx is not None:
                        result["nginx_us"] = (nginx.cpu_seconds() - before[2]) / units * 1e6
                    runs[target].append(result)
        self.extra["light_errors"] = sum(r["errors"] for rs in runs.values() for r in rs)

        def med(key: str, target: str) -> float:
            return median([r[key] for r in runs[target]]) if runs.get(target) else float("nan")

        rps_d, rps_p = med("rps", "light-direct"), med("rps", "light-proxied")
        self.rows.append(
            Row(
                f"light upstream: tools/call throughput ({p.connections} conns)",
                "req/s",
                rps_d,
                rps_p,
                ">= 0.6x direct",
                rps_p >= 0.6 * rps_d,
            )
        )
        if "light-nginx" in runs:
            self.rows.append(
                Row(
                    "light upstream: through nginx (static bearer) instead",
                    "req/s",
                    rps_d,
                    med("rps", "light-nginx"),
                    "-",
                    None,
                )
            )
            cpu_nginx, cpu_proxy = med("nginx_us", "light-nginx"), med("proxy_us", "light-proxied")
            self.rows.append(
                Row(
                    "  CPU per call: nginx (direct column) vs proxy",
                    "us",
                    cpu_nginx,
                    cpu_proxy,
                    "<= 2.5x nginx",
                    cpu_proxy <= 2.5 * cpu_nginx,
                )
            )
        else:
            self.rows.append(
                Row(
                    "light upstream: through nginx",
                    "req/s",
                    None,
                    None,
                    "-",
                    None,
                    "nginx is not installed",
                )
            )
        self.rows.append(
            Row(
                "  CPU per call: light upstream process",
                "us",
                med("upstream_us", "light-direct"),
                med("upstream_us", "light-proxied"),
                "-",
                None,
            )
        )

    def _soak(self, servers: Worker, load: Worker) -> None:
        """Many clients, many calls, the authorization server invalidating every access token
        every N answered calls: how many calls fail."""
        p = self.p
        for every, target, required in ((1000, "= 0", True), (100, "-", False)):
            self.log(
                f"soak: {p.soak_clients} clients x {p.soak_calls} calls, "
                f"a rotation every {every} calls"
            )
            before = servers.call("stats")["token_requests"]
            result = load.call(
                "soak",
                wait=600.0,
                target="proxied",
                clients=p.soak_clients,
                calls=p.soak_calls,
                rotate_every=every,
                rotate_url=servers.info["rotate_url"],
                timeout=300.0,
            )
            grants = servers.call("stats")["token_requests"] - before
            servers.call("clear")
            self.rows.append(
                Row(
                    f"soak {p.soak_clients}x{p.soak_calls} calls, rotation every {every}: "
                    "failed calls",
                    "",
                    None,
                    result["failed"],
                    target,
                    result["failed"] == 0 if required else None,
                    f"{result['rotations']} rotations, {grants} token requests, "
                    f"{result['elapsed']:.1f} s; answers: {result['statuses']}",
                )
            )

    def _sse(self, servers: Worker, proxy: Worker, load: Worker) -> None:
        p = self.p
        runs = self._rounds(
            "SSE event throughput",
            "sse_load",
            servers,
            proxy,
            load,
            connections=p.sse_connections,
            duration=p.duration,
            warmup=p.warmup,
            count=p.sse_events,
        )
        self.extra["sse_errors"] = sum(r["errors"] for rs in runs.values() for r in rs)
        added: dict[str, dict[str, list[float]]] = {
            "p50": {"direct": [], "proxied": []},
            "p99": {"direct": [], "proxied": []},
        }
        for round_ in range(p.rounds):
            for target in ("direct", "proxied"):
                self.log(f"SSE per-event latency, {target}, round {round_ + 1}/{p.rounds}")
                servers.call("clear")
                result = load.call(
                    "sse_arrivals",
                    target=target,
                    streams=p.latency_streams,
                    count=p.latency_events,
                    pace=p.latency_pace,
                )
                written = servers.call("event_times", kind="sse.event")
                delays = [
                    (arrived - written[event_id]) * 1000
                    for event_id, arrived in result["arrivals"].items()
                    if event_id in written
                ]
                for q in ("p50", "p99"):
                    added[q][target].append(nearest_rank(delays, float(q[1:])))
        ev_d = median([r["events_per_s"] for r in runs["direct"]])
        ev_p = median([r["events_per_s"] for r in runs["proxied"]])
        self.rows.append(
            Row(
                f"SSE events/s (stream tool, pace 0, {p.sse_connections} conns)",
                "ev/s",
                ev_d,
                ev_p,
                ">= 0.8x direct",
                ev_p >= 0.8 * ev_d,
            )
        )
        self._cpu_rows(runs, "event")
        pace = f"pace {p.latency_pace * 1000:g} ms"
        d50, x50 = median(added["p50"]["direct"]), median(added["p50"]["proxied"])
        self.rows.append(Row(f"SSE per-event latency p50 ({pace})", "ms", d50, x50, "-", None))
        d99, x99 = median(added["p99"]["direct"]), median(added["p99"]["proxied"])
        self.rows.append(
            Row(
                f"SSE per-event latency p99 ({pace})",
                "ms",
                d99,
                x99,
                "<= +2 ms added",
                x99 - d99 <= 2.0,
            )
        )

    def _open_streams(self, servers: Worker, proxy: Worker, load: Worker) -> None:
        n = self.p.open_streams
        self.log(f"{n} open SSE streams through the proxy")
        idle = proxy.memory_kib()["VmRSS"]
        result = load.call("open_streams", target="proxied", n=n, timeout=60.0)
        peak = proxy.memory_kib()["VmHWM"]
        load.call("close_streams")
        servers.call("clear")
        self.rows.append(
            Row(
                f"{n} open SSE streams: proxy peak RSS",
                "MB",
                None,
                peak / 1024,
                "<= 150 MB",
                peak / 1024 <= 150 and result["opened"] == n,
                f"{result['opened']}/{n} opened in {result['elapsed']:.1f} s; "
                f"idle RSS {idle / 1024:.0f} MB",
            )
        )

    def _rotation(self, servers: Worker, load: Worker) -> None:
        p = self.p
        n = p.burst
        rounds = max(1, min(p.rounds, 3))
        baseline: dict[str, list[float]] = {"direct": [], "proxied": []}
        for target in ("direct", "proxied"):
            # Untimed: the proxy opens its upstream connections once, as a long-lived one would.
            load.call("burst", target=target, n=n, timeout=60.0)
        for round_ in range(rounds):
            for target in ("direct", "proxied"):
                self.log(f"{n} concurrent calls, {target}, no rotation, round {round_ + 1}")
                result = load.call("burst", target=target, n=n, timeout=60.0)
                baseline[target].append(result["elapsed"])
        requests: list[int] = []
        answered: list[int] = []
        recovery: list[float] = []
        for round_ in range(rounds):
            self.log(f"{n} concurrent calls hitting one rotation, round {round_ + 1}")
            before = servers.call("stats")["token_requests"]
            servers.call("rotate")
            result = load.call("burst", target="proxied", n=n, timeout=60.0)
            requests.append(servers.call("stats")["token_requests"] - before)
            answered.append(result["answered"])
            recovery.append(result["elapsed"])
            servers.call("clear")
        self.rows.append(
            Row(
                f"{n} calls on one rotation: token requests",
                "",
                None,
                max(requests),
                "= 1",
                all(r == 1 for r in requests),
                f"per round: {requests}",
            )
        )
        self.rows.append(
            Row(
                f"{n} calls on one rotation: answered",
                "",
                None,
                min(answered),
                f"= {n}",
                all(a == n for a in answered),
            )
        )
        self.rows.append(
            Row(
                f"{n} calls: all answered after (direct: no rotation)",
                "ms",
                median(baseline["direct"]) * 1000,
                median(recovery) * 1000,
                "-",
                None,
                f"proxied without a rotation: {median(baseline['proxied']) * 1000:.0f} ms",
            )
        )

    def _harness(self) -> None:
        p = self.p
        with Worker("harness", "_harness.py") as harness:
            self.log(f"harness up+down x{p.harness_rounds}")
            fakes = harness.call("updown", rounds=p.harness_rounds, with_proxy=False)
            full = harness.call("updown", rounds=p.harness_rounds, with_proxy=True)
            self.rows.append(
                Row(
                    "harness up+down per test (direct: fakes only)",
                    "ms",
                    median(fakes) * 1000,
                    median(full) * 1000,
                    "<= 50 ms",
                    median(full) * 1000 <= 50,
                )
            )
            shakes = harness.call("handshake", rounds=p.harness_rounds)
            self.rows.append(
                Row(
                    "MCP handshake through the proxy, over aiohttp (direct: httpx's transport)",
                    "ms",
                    median(shakes["httpx"]) * 1000,
                    median(shakes["aiohttp"]) * 1000,
                    "-",
                    None,
                    "what freshtoken_client does before each test (on the fixtures' loop)",
                )
            )
            if p.pytest_tests > 0:
                self._fixture_rows(harness)
            if p.catalogue_limit == 0:
                return
            self.log("scenario catalogue on the proxy")
            result = harness.call(
                "catalogue", wait=600.0, limit=p.catalogue_limit, scenario_timeout=30.0
            )
            if not result["available"]:
                self.rows.append(
                    Row("scenario catalogue", "s", None, None, "<= 15 s", None, result["reason"])
                )
                return
            failed = result["failed"]
            count = "" if result["scenarios"] is None else f" ({result['scenarios']} scenarios)"
            self.extra["catalogue_how"] = result["how"]
            self.rows.append(
                Row(
                    f"scenario catalogue on the proxy{count}",
                    "s",
                    None,
                    result["elapsed"],
                    "<= 15 s",
                    result["elapsed"] <= 15 and not failed,
                    f"{len(failed)} failed: {', '.join(failed)}" if failed else "all passed",
                )
            )

    def _fixture_rows(self, harness: Worker) -> None:
        p = self.p
        rounds = max(1, min(p.rounds, 3))
        for workers in (0, 2):
            where = "under xdist -n 2" if workers else "in one process"
            self.log(f"harness per test through the pytest fixtures, {where}")
            cost = harness.call(
                "pytest_cost", wait=600.0, tests=p.pytest_tests, rounds=rounds, workers=workers
            )
            plain = median(cost["plain"]) * 1000
            suffix = f" ({where})" if workers else ""
            for kind, name, target, limit in (
                ("proxy", "freshtoken_proxy", "<= 50 ms", 50.0),
                ("client", "freshtoken_client", "<= 5 ms", 5.0),
            ):
                with_fixture = median(cost[kind]) * 1000
                added = with_fixture - plain
                self.rows.append(
                    Row(
                        f"pytest test with {name}{suffix} (direct: plain test)",
                        "ms",
                        plain,
                        with_fixture,
                        f"{target} added",
                        added <= limit,
                        f"the fixture adds {added:.1f} ms per test",
                    )
                )
            first = median(cost["first"]) * 1000
            self.rows.append(
                Row(
                    f"first freshtoken_client test in a fresh process{suffix}",
                    "ms",
                    None,
                    first,
                    "<= 300 ms",
                    first <= 300,
                    "loads the harness (bytecode cached), starts the fixtures' loop"
                    + (" (each worker)" if workers else ""),
                )
            )


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if value != value:  # NaN: nothing measured
        return "n/a"
    if unit in ("req/s", "ev/s") or (unit == "" and value == int(value)):
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "MB":
        return f"{value:.0f} MB"
    if unit == "us":
        return f"{value:.0f} us"
    return f"{value:.2f} {unit}".strip()


def table(rows: Sequence[Row], *, markdown: bool = False) -> str:
    head = ("figure", "direct", "proxied", "ratio", "target", "met")
    lines = [
        (
            r.figure,
            _number(r.direct, r.unit),
            _number(r.proxied, r.unit),
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            r.target,
            {True: "yes", False: "NO", None: "-"}[r.met],
        )
        for r in rows
    ]
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
        return "\n".join(out)
    widths = [max(len(c[i]) for c in (head, *lines)) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*cells) for cells in (head, *lines))


def parse_args(argv: Sequence[str] | None) -> tuple[Params, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer and shorter rounds")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--markdown", type=Path, help="write the table as Markdown")
    parser.add_argument("--pin", action="store_true", help="pin the fakes and the proxy to CPUs")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="py-spy the proxy first; reports go to DIR"
    )
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--duration", type=float, help="seconds per throughput round")
    parser.add_argument("--connections", type=int)
    parser.add_argument("--open-streams", type=int)
    parser.add_argument("--burst", type=int)
    parser.add_argument("--soak-clients", type=int)
    parser.add_argument("--soak-calls", type=int)
    parser.add_argument("--harness-rounds", type=int)
    parser.add_argument(
        "--pytest-tests", type=int, help="tests per pytest-fixture timing run (0 skips it)"
    )
    parser.add_argument("--catalogue-limit", type=int, help="run only the first N scenarios")
    args = parser.parse_args(argv)
    params = dataclasses.replace(QUICK) if args.quick else Params()
    for name in (
        "rounds",
        "duration",
        "connections",
        "open_streams",
        "burst",
        "soak_clients",
        "soak_calls",
        "harness_rounds",
        "pytest_tests",
        "catalogue_limit",
    ):
        value = getattr(args, name)
        if value is not None:
            setattr(params, name, value)
    params.pin = args.pin
    params.profile = args.profile
    if params.duration < params.latency_duration:
        params.latency_duration = params.duration
    if params.duration < params.warmup * 2:
        params.warmup = params.duration / 4
    return params, args


def main(argv: Sequence[str] | None = None) -> int:
    params, args = parse_args(argv)
    started = time.perf_counter()
    bench = Bench(params, lambda message: print(f"... {message}", file=sys.stderr, flush=True))
    info = machine()
    bench.run()
    info["load_average_after"] = os.getloadavg()[0]
    command = "python benchmarks/run.py" + (" " + " ".join(argv) if argv else "")
    print(table(bench.rows))
    print()
    print(
        f"machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, "
        f"aiohttp {info['aiohttp']}; 1-min load average {info['load_average']:.1f} before, "
        f"{info['load_average_after']:.1f} after (above ~1, other work shares the CPUs: "
        "throughput is noisy, CPU per call is not)"
    )
    print(f"placement: {bench.extra['placement']}")
    print(
        "load generator: benchmarks/_load.py (raw asyncio HTTP/1.1 keep-alive client, "
        "its own process)"
    )
    print(f"took {time.perf_counter() - started:.0f} s")
    for row in bench.rows:
        if row.note:
            print(f"note: {row.figure}: {row.note}")
    summary = {
        "command": command,
        "machine": info,
        "params": dataclasses.asdict(params),
        "rows": [{**dataclasses.asdict(r), "ratio": r.ratio} for r in bench.rows],
        **bench.extra,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    if args.markdown is not None:
        args.markdown.write_text(table(bench.rows, markdown=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
