"""Run one scenario against one subject on fresh fakes, and judge the invariants."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from freshtoken._errors import ServerSideError
from freshtoken._timeline import Event, Timeline
from freshtoken.scenarios._client import CallOutcome, McpClient
from freshtoken.scenarios._clockwork import drive_clock
from freshtoken.scenarios._harness import Harness
from freshtoken.scenarios._model import (
    Advance,
    AuthorizationControl,
    Burst,
    Call,
    Disconnect,
    Initialize,
    Join,
    McpFault,
    OpenGetStream,
    Restart,
    Resume,
    Scenario,
    Step,
    Stream,
    Wait,
)
from freshtoken.scenarios._subjects import Environment, Subject, get_subject

__all__ = ["CheckResult", "ScenarioResult", "run_scenario", "run_scenario_sync"]

STEP_TIMEOUT = 5.0
"""Real seconds any single client step may take before the run counts it as hung."""
COMMAND_JOIN_QUIET = 0.5
"""An external client's ``join`` ends once nothing has slept on the clock for this many real
seconds (the runner cannot see the client's own background calls)."""


@dataclass(frozen=True)
class CheckResult:
    """One invariant's verdict, with the reason when it failed."""

    name: str
    passed: bool
    reason: str = ""


@dataclass(frozen=True)
class ScenarioResult:
    """What running a scenario against a subject showed."""

    scenario: Scenario
    subject: str
    checks: tuple[CheckResult, ...]
    token_requests: int
    upstream_sends: int
    client_calls: int
    duration: float
    timeline: Timeline
    error: str | None = None
    grants: Mapping[str, int] = field(default_factory=dict)
    """Token requests by grant type, as the fake authorization server saw them."""

    @property
    def passed(self) -> bool:
        return self.error is None and all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[CheckResult]:
        failed = [check for check in self.checks if not check.passed]
        if self.error is not None:
            failed.insert(0, CheckResult("run", False, self.error))
        return failed

    def format_failures(self) -> str:
        """The failed checks, then the timeline: what a report prints for a failing run."""
        lines = [f"{self.scenario.name} on {self.subject}: FAILED"]
        lines += [f"  {check.name}: {check.reason}" for check in self.failures]
        lines.append("  timeline:")
        lines += ["    " + line for line in self.timeline.format().splitlines()]
        return "\n".join(lines)


@dataclass
class _CallRecord:
    index: int
    label: str
    expect: str
    expect_status: int | None = None
    stream_count: int | None = None
    outcome: CallOutcome | None = None
    abandoned: bool = False
    hung: bool = False


class _Play:
    """Executes steps for a subject session; collects what each call ended with."""

    def __init__(self, scenario: Scenario, env: Environment) -> None:
        self.scenario = scenario
        self.env = env
        self.harness = env.harness
        self.records: list[_CallRecord] = []
        self.background: list[tuple[_CallRecord, asyncio.Task[CallOutcome]]] = []
        self.problems: list[str] = []
        self.refresh_replays = 0
        """Refresh grants the runner itself sent (``replay_refresh``): not the subject's."""

    @property
    def steps(self) -> Sequence[Step]:
        return self.scenario.steps

    # -- client steps -----------------------------------------------------------------------

    async def client_step(self, index: int, client: McpClient) -> None:
        step = self.steps[index]
        self.env.timeline.record("runner", "step", index=index, step=step.kind)
        if isinstance(step, Initialize):
            await self._bounded(client.initialize(), f"step {index} (initialize)")
        elif isinstance(step, Call):
            await self._call(index, step, client)
        elif isinstance(step, Stream):
            record = _CallRecord(index, "stream", step.expect, stream_count=step.count)
            coro = client.call("stream", {"count": step.count, "pace": step.pace}, progress=True)
            self._start_background(record, coro)
        elif isinstance(step, Burst):
            records = [
                _CallRecord(index, f"burst {i + 1}/{step.n}", "result") for i in range(step.n)
            ]
            self.records.extend(records)
            outcomes = await self._bounded(
                asyncio.gather(*(client.call(step.tool, step.arguments) for _ in records)),
                f"step {index} (burst of {step.n})",
            )
            if outcomes is None:
                for record in records:
                    record.hung = True
            else:
                for record, outcome in zip(records, outcomes, strict=True):
                    record.outcome = outcome
        elif isinstance(step, OpenGetStream):
            await self._bounded(client.open_get_stream(), f"step {index} (open GET stream)")
        elif isinstance(step, Resume):
            await self._bounded(client.resume_get_stream(), f"step {index} (resume)")
        elif isinstance(step, Disconnect):
            await self._disconnect()
        elif isinstance(step, Join):
            await self._join(step.advance, step.timeout)
        else:
            raise AssertionError(f"not a client step: {step!r}")

    async def _call(self, index: int, step: Call, client: McpClient) -> None:
        headers: dict[str, str] = {}
        if step.origin is not None:
            headers["Origin"] = step.origin
        if step.host is not None:
            headers["Host"] = step.host
        record = _CallRecord(index, f"call {step.tool}", step.expect, step.expect_status)
        coro = client.call(step.tool, step.arguments, extra_headers=headers or None)
        if step.background:
            self._start_background(record, coro)
            return
        self.records.append(record)
        outcome = await self._bounded(coro, f"step {index} ({record.label})")
        if outcome is None:
            record.hung = True
        record.outcome = outcome

    def _start_background(self, record: _CallRecord, coro: Any) -> None:
        self.records.append(record)
        self.background.append((record, asyncio.ensure_future(coro)))

    async def _disconnect(self) -> None:
        pending, self.background = self.background, []
        for record, task in pending:
            if task.done():
                record.outcome = _result_of(task)
            else:
                record.abandoned = True
                task.cancel()
        await asyncio.gather(*(task for _, task in pending), return_exceptions=True)

    async def _join(self, advance: float, timeout: float) -> None:
        tasks = [task for _, task in self.background]
        await drive_clock(self.env.clock, advance=advance, timeout=timeout, until=tasks)
        still, self.background = self.background, []
        for record, task in still:
            if task.done():
                record.outcome = _result_of(task)
            else:
                record.hung = True
                task.cancel()
                self.problems.append(f"{record.label} (step {record.index}) never finished")
        await asyncio.gather(*(task for _, task in still), return_exceptions=True)

    async def _bounded(self, awaitable: Any, what: str) -> Any:
        try:
            return await asyncio.wait_for(awaitable, STEP_TIMEOUT)
        except TimeoutError:
            self.problems.append(f"{what} did not finish within {STEP_TIMEOUT:g} s")
            self.env.timeline.record("runner", "step.timeout", what=what)
            return None

    # -- runner steps -----------------------------------------------------------------------

    async def runner_step(self, index: int) -> None:
        step = self.steps[index]
        self.env.timeline.record("runner", "step", index=index, step=step.kind)
        if isinstance(step, McpFault):
            self.harness.mcp_server.faults.add(step.fault)
        elif isinstance(step, AuthorizationControl):
            await self._authorization(step)
        elif isinstance(step, Advance):
            if step.when_sleeping:
                # Bounded: with nothing asleep the tick still happens, just unaimed.
                with contextlib.suppress(TimeoutError):
                    await self.env.clock.wait_for_sleepers(1, timeout=2.0)
            self.env.clock.advance(step.seconds)
            await asyncio.sleep(0)  # a yield, so the woken sleepers go first
        elif isinstance(step, Wait):
            await self._wait(index, step)
        elif isinstance(step, Restart):
            self.harness.mcp_server.drop_sessions()
        elif isinstance(step, Join):
            # An external client's join: the runner cannot see its background calls, so it
            # moves time until nothing has slept on the clock for a while.
            await drive_clock(
                self.env.clock,
                advance=step.advance,
                timeout=step.timeout,
                quiet=COMMAND_JOIN_QUIET,
            )
        else:
            raise AssertionError(f"not a runner step: {step!r}")

    async def _authorization(self, step: AuthorizationControl) -> None:
        server = self.harness.authorization_server
        env = self.env
        if step.action == "rotate":
            server.rotate()
        elif step.action == "expire":
            server.expire(env.access_token)
        elif step.action == "revoke":
            server.revoke_family(env.refresh_token or env.access_token)
        elif step.action == "fail_next":
            server.fail_next(
                step.times,
                status=step.status,
                error=step.error,
                delay=step.delay,
                reset=step.reset,
                garbage=step.garbage,
                lose_response=step.lose_response,
            )
        else:
            # A stale copy of the seeded refresh token is presented again (another process
            # that still holds it, or a leaked copy).
            self.refresh_replays += 1
            env.timeline.record("runner", "refresh.replay", token=env.refresh_token)
            async with httpx.AsyncClient(verify=env.verify, timeout=STEP_TIMEOUT) as http:
                await http.post(
                    env.token_endpoint,
                    data={"grant_type": "refresh_token", "refresh_token": env.refresh_token or ""},
                    auth=(env.client_id, env.client_secret),
                )

    async def _wait(self, index: int, step: Wait) -> None:
        def enough(_event: Event) -> bool:
            return self.env.timeline.count(actor=step.actor, kind=step.event) >= step.count

        try:
            await self.env.timeline.wait_for(enough, timeout=step.timeout)
        except TimeoutError:
            who = f"{step.actor} " if step.actor else ""
            self.problems.append(
                f"step {index}: waited {step.timeout:g} s for {step.count} x {who}{step.event}"
            )
            self.env.timeline.record("runner", "wait.timeout", event=step.event)

    def report_call(self, index: int, outcome: Mapping[str, Any]) -> None:
        step = self.steps[index]
        expect = getattr(step, "expect", "result")
        record = _CallRecord(
            index,
            step.kind,
            expect,
            getattr(step, "expect_status", None),
            stream_count=step.count if isinstance(step, Stream) else None,
        )
        status = outcome.get("status")
        progress = outcome.get("progress") or []
        result: dict[str, Any] | None = {} if outcome.get("ok") else None
        record.outcome = CallOutcome(
            status=status if isinstance(status, int) else None,
            result=result,
            error=None if result is not None else str(outcome.get("error", "failed")),
            progress=[float(p) for p in progress if isinstance(p, int | float)],
        )
        if result is not None and record.outcome.status is None:
            record.outcome.status = 200
        self.records.append(record)
        self.env.timeline.record(
            "client",
            "call.result" if record.outcome.ok else "call.error",
            status=record.outcome.status,
            step=index,
        )

    async def finish(self) -> None:
        if self.background:
            await self._join(1.0, STEP_TIMEOUT)


def _result_of(task: asyncio.Task[CallOutcome]) -> CallOutcome:
    if task.cancelled():
        return CallOutcome(status=None, error="cancelled")
    exc = task.exception()
    if exc is not None:
        return CallOutcome(status=None, error=f"{type(exc).__name__}: {exc}")
    return task.result()


# -- judging -----------------------------------------------------------------------------------


def _judge(
    scenario: Scenario, play: _Play, timeline: Timeline, duration: float
) -> list[CheckResult]:
    inv = scenario.invariants
    checks: list[CheckResult] = []
    # Counts come from what the fake authorization server saw, never from the subject's events.
    seen = play.harness.authorization_server
    token_requests = len(seen.token_requests_seen())
    live = [r for r in play.records if not r.abandoned]

    if inv.every_call_answered:
        bad = [
            f"{step.kind} (step {index}) was never reported"
            for index, step in enumerate(scenario.steps)
            if isinstance(step, Call | Stream | Burst)
            and not any(r.index == index for r in play.records)
        ]
        for record in live:
            outcome = record.outcome
            if outcome is None:
                bad.append(f"{record.label} (step {record.index}) got no answer")
            elif record.expect == "result" and not outcome.ok:
                bad.append(f"{record.label} (step {record.index}) failed: {outcome.error}")
            elif record.expect == "error" and outcome.ok:
                bad.append(f"{record.label} (step {record.index}) succeeded; expected an error")
        checks.append(_check("every_call_answered", bad))
    if inv.status_passed_through:
        bad = [
            f"{r.label} (step {r.index}) saw status "
            f"{r.outcome.status if r.outcome else None}, expected {r.expect_status}"
            for r in live
            if r.expect_status is not None
            and (r.outcome is None or r.outcome.status != r.expect_status)
        ]
        checks.append(_check("status_passed_through", bad))
    if inv.max_token_requests is not None:
        checks.append(
            _check(
                "max_token_requests",
                [f"{token_requests} token requests > {inv.max_token_requests}"]
                if token_requests > inv.max_token_requests
                else [],
            )
        )
    if inv.no_refresh:
        refreshes = len(seen.token_requests_seen("refresh_token")) - play.refresh_replays
        checks.append(
            _check(
                "no_refresh", [f"{refreshes} refresh(es); none was called for"] if refreshes else []
            )
        )
    if inv.no_refresh_reuse:
        reuse = timeline.count(actor="as", kind="refresh.reuse")
        checks.append(
            _check(
                "no_refresh_reuse",
                [f"the authorization server saw {reuse} reused refresh token(s)"] if reuse else [],
            )
        )
    if inv.max_upstream_sends_per_call is not None:
        limit = inv.max_upstream_sends_per_call
        sends = _sends_per_call(timeline)
        bad = [
            f"call id {rid} reached the MCP server {n} times (> {limit})"
            for rid, n in sends.items()
            if n > limit
        ]
        checks.append(_check("max_upstream_sends_per_call", bad))
    if inv.max_upstream_sends is not None:
        total = timeline.count(actor="mcp", kind="request")
        checks.append(
            _check(
                "max_upstream_sends",
                [f"{total} upstream requests > {inv.max_upstream_sends}"]
                if total > inv.max_upstream_sends
                else [],
            )
        )
    if inv.max_auth_rejections is not None:
        rejected = timeline.select(actor="mcp", kind="auth.rejected")
        checks.append(
            _check(
                "max_auth_rejections",
                [
                    f"the MCP server rejected {len(rejected)} bearer(s) "
                    f"(> {inv.max_auth_rejections}): "
                    + ", ".join(sorted({e.token or "none" for e in rejected}))
                ]
                if len(rejected) > inv.max_auth_rejections
                else [],
            )
        )
    if inv.sse_in_order:
        bad = []
        for record in live:
            if record.stream_count is None or record.outcome is None:
                continue
            progress = record.outcome.progress
            if any(b <= a for a, b in itertools.pairwise(progress)):
                bad.append(
                    f"{record.label} (step {record.index}) got events out of order: {progress}"
                )
            elif record.outcome.ok and len(progress) != record.stream_count:
                bad.append(
                    f"{record.label} (step {record.index}) got {len(progress)} of "
                    f"{record.stream_count} progress events"
                )
        checks.append(_check("sse_in_order", bad))
    if inv.upstream_cancelled:
        cancelled = timeline.count(actor="mcp", kind="stream.cancelled")
        checks.append(
            _check(
                "upstream_cancelled",
                [] if cancelled else ["the MCP server never saw the abandoned stream cancelled"],
            )
        )
    for event in timeline.select(actor="client"):
        if event.kind == "command.exit" and event.status:
            play.problems.append(f"the command exited with status {event.status}")
        elif event.kind == "command.timeout":
            play.problems.append(f"the command ran past {event.detail['timeout']:g} s")
    hang = list(play.problems)
    if duration > inv.max_duration:
        hang.append(f"the run took {duration:.2f} s > {inv.max_duration:g} s")
    checks.append(_check("no_hang", hang))
    return checks


def _check(name: str, problems: list[str]) -> CheckResult:
    return CheckResult(name, not problems, "; ".join(problems))


def _sends_per_call(timeline: Timeline) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in timeline.select(actor="mcp", kind="request"):
        if event.detail.get("rpc_method") != "tools/call" or event.request_id is None:
            continue
        counts[event.request_id] = counts.get(event.request_id, 0) + 1
    return counts


# -- running -----------------------------------------------------------------------------------


async def run_scenario(scenario: Scenario, subject: Subject | str = "proxy") -> ScenarioResult:
    """Run ``scenario`` against ``subject`` on fresh fakes (manual clock, one timeline).

    Never raises for a misbehaving subject: failures, hangs and crashes are in the result.
    """
    if isinstance(subject, str):
        subject = get_subject(subject)
    harness = Harness(scenario.setup, proxy=False)
    timeline = harness.timeline
    started = time.monotonic()
    error: str | None = None
    play: _Play | None = None
    try:
        async with harness:
            play = _Play(scenario, Environment.of(scenario, harness))
            async with subject.session(play.env) as session:
                try:
                    await asyncio.wait_for(session.play(play), scenario.invariants.max_duration)
                except TimeoutError:
                    play.problems.append(
                        f"the steps did not finish within {scenario.invariants.max_duration:g} s"
                    )
                await play.finish()
    except ServerSideError as exc:
        error = f"fake server error: {exc}"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    duration = time.monotonic() - started
    checks = _judge(scenario, play, timeline, duration) if play is not None else []
    grants = Counter(
        seen.grant_type or "(none)"
        for seen in (harness.authorization_server.token_requests_seen() if play is not None else ())
    )
    return ScenarioResult(
        scenario=scenario,
        subject=subject.name,
        checks=tuple(checks),
        token_requests=sum(grants.values()),
        upstream_sends=timeline.count(actor="mcp", kind="request"),
        client_calls=len(play.records) if play is not None else 0,
        duration=duration,
        timeline=timeline,
        error=error,
        grants=grants,
    )


def run_scenario_sync(scenario: Scenario, subject: Subject | str = "proxy") -> ScenarioResult:
    """:func:`run_scenario` from synchronous code (its own event loop; not inside a running one)."""
    return asyncio.run(run_scenario(scenario, subject))
