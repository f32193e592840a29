"""Playing a scenario's steps for one subject session, and keeping what the verdicts need.

The play runs runner steps (faults, clock, waits) itself and client steps through the subject's
client, or takes an external client's reports. Besides each call's outcome it keeps *where on
the timeline* things happened (when each runner step ran, when each call ended), so the verdicts
can match a call to what the fake MCP server saw between those points.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from freshtoken._setup import STATELESS_VERSION
from freshtoken._timeline import Event
from freshtoken.scenarios._client import CallOutcome, McpClient
from freshtoken.scenarios._clockwork import drive_clock
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
from freshtoken.scenarios._session import CommandRun, Environment, ProtocolViolation

__all__ = ["STEP_TIMEOUT", "CallRecord", "ScenarioPlay", "describe_step", "is_runner_step"]

T = TypeVar("T")

_RESERVED = frozenset({"actor", "kind", "request_id", "token", "token_fingerprint", "status"})

STEP_TIMEOUT = 5.0
"""Real seconds any single client step may take before the run counts it as hung."""


def is_runner_step(step: Step) -> bool:
    """Whether the runner performs ``step`` for an external client (a ``join`` included: the
    runner moves the clock until the client's background calls are reported)."""
    return not step.client_step or isinstance(step, Join)


def describe_step(step: Step) -> str:
    """A step in a few words: ``call whoami``, ``fault as rotate``, ``burst of 8 echo``."""
    if isinstance(step, Call):
        return f"call {step.tool}"
    if isinstance(step, Burst):
        return f"burst of {step.n} {step.tool}"
    if isinstance(step, Stream):
        return f"stream of {step.count}"
    if isinstance(step, McpFault):
        return f"fault mcp {step.fault.action.kind}"
    if isinstance(step, AuthorizationControl):
        return f"fault as {step.action}"
    if isinstance(step, Advance):
        return f"advance {step.seconds:g} s"
    if isinstance(step, Wait):
        return f"wait {step.actor + ' ' if step.actor else ''}{step.event}"
    return step.kind


def _tool(step: Step) -> str:
    if isinstance(step, Call | Burst):
        return step.tool
    return "stream"


def _expected_reports(step: Step) -> int:
    if isinstance(step, Burst):
        return step.n
    return 1 if isinstance(step, Call | Stream) else 0


@dataclass
class CallRecord:
    """One call the scenario asked for, and how it ended.

    ``start_seq`` is the timeline number when it was asked for, ``end_seq`` when it ended (or
    was reported); ``request_id`` the JSON-RPC id it went out with, when known.
    """

    index: int
    label: str
    tool: str
    expect: str
    expect_status: int | None = None
    stream_count: int | None = None
    outcome: CallOutcome | None = None
    abandoned: bool = False
    hung: bool = False
    end_seq: int | None = None
    request_id: str | None = None
    start_seq: int | None = None


class ScenarioPlay:
    """Executes steps for a subject session; collects what each call ended with."""

    def __init__(self, scenario: Scenario, env: Environment) -> None:
        self.scenario = scenario
        self.env = env
        self.harness = env.harness
        self.timeline = env.timeline
        self.first_seq = env.timeline.next_seq
        self.records: list[CallRecord] = []
        self.background: list[tuple[CallRecord, asyncio.Task[CallOutcome]]] = []
        self.problems: list[str] = []
        """Hangs and timeouts, in the order they happened."""
        self.ran: dict[int, tuple[int, int]] = {}
        """Runner steps that ran: index → (timeline number at start, at end)."""
        self.refresh_replays = 0
        """Refresh grants the runner itself sent (``replay_refresh``): not the subject's."""
        self.command: CommandRun | None = None
        self.startup = 0.0
        """Real seconds an external client took to start (not counted against max_duration)."""
        self._reported: dict[int, asyncio.Future[None]] = {}
        self.openers: list[asyncio.Future[int]] = []
        """GET streams opened in the background, until their headers come."""

    @property
    def steps(self) -> Sequence[Step]:
        return self.scenario.steps

    @property
    def stateless(self) -> bool:
        return self.scenario.setup.protocol_version == STATELESS_VERSION

    # -- client steps (in-process subjects) ----------------------------------------------------

    async def client_step(self, index: int, client: McpClient) -> None:
        step = self.steps[index]
        self.timeline.record("runner", "step", index=index, step=step.kind)
        if isinstance(step, Initialize):
            await self._bounded(client.initialize(), f"step {index} (initialize)")
        elif isinstance(step, Call):
            await self._call(index, step, client)
        elif isinstance(step, Stream):
            record = self._record(index)
            call = client.call("stream", {"count": step.count, "pace": step.pace}, progress=True)
            self._start_background(record, self._ended(record, call))
        elif isinstance(step, Burst):
            records = [self._record(index, f"burst {i + 1}/{step.n}") for i in range(step.n)]
            calls = (self._ended(r, client.call(step.tool, step.arguments)) for r in records)
            outcomes = await self._bounded(_gathered(calls), f"step {index} (burst of {step.n})")
            if outcomes is None:
                for record in records:
                    record.hung = True
        elif isinstance(step, OpenGetStream) and step.background:
            # Not awaited: its response headers may never come; the session's end cancels it.
            self.openers.append(asyncio.ensure_future(client.open_get_stream()))
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

    def _record(self, index: int, label: str | None = None) -> CallRecord:
        step = self.steps[index]
        record = CallRecord(
            index,
            label or describe_step(step),
            _tool(step),
            getattr(step, "expect", "result"),
            getattr(step, "expect_status", None),
            stream_count=step.count if isinstance(step, Stream) else None,
            start_seq=self.timeline.next_seq,
        )
        self.records.append(record)
        return record

    async def _ended(self, record: CallRecord, call: Any) -> CallOutcome:
        outcome: CallOutcome = await call
        record.outcome = outcome
        record.request_id = outcome.request_id
        record.end_seq = self.timeline.next_seq
        return outcome

    async def _call(self, index: int, step: Call, client: McpClient) -> None:
        headers: dict[str, str] = {}
        if step.origin is not None:
            headers["Origin"] = step.origin
        if step.host is not None:
            headers["Host"] = step.host
        record = self._record(index)
        call = client.call(step.tool, step.arguments, extra_headers=headers or None)
        if step.background:
            self._start_background(record, self._ended(record, call))
            return
        if await self._bounded(self._ended(record, call), f"step {index} ({record.label})") is None:
            record.hung = True

    def _start_background(self, record: CallRecord, ended: Any) -> None:
        self.background.append((record, asyncio.ensure_future(ended)))

    async def _disconnect(self) -> None:
        pending, self.background = self.background, []
        for record, task in pending:
            if not task.done():
                record.abandoned = True
                task.cancel()
        await asyncio.gather(*(task for _, task in pending), return_exceptions=True)
        for record, task in pending:
            if not record.abandoned:
                record.outcome = _result_of(task)

    async def _join(self, advance: float, timeout: float) -> None:
        tasks = [task for _, task in self.background]
        if tasks:
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
            self.timeline.record("runner", "step.timeout", what=what)
            return None

    # -- runner steps --------------------------------------------------------------------------

    async def runner_step(self, index: int) -> None:
        step = self.steps[index]
        if index in self.ran:
            raise ProtocolViolation(f"step {index} ({describe_step(step)}) already ran")
        start = self.timeline.next_seq
        self.timeline.record("runner", "step", index=index, step=step.kind)
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
            await self._join_reports(index, step)
        else:
            raise AssertionError(f"not a runner step: {step!r}")
        self.ran[index] = (start, self.timeline.next_seq)

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
            self.timeline.record("runner", "refresh.replay", token=env.refresh_token)
            async with httpx.AsyncClient(verify=env.verify, timeout=STEP_TIMEOUT) as http:
                await http.post(
                    env.token_endpoint,
                    data={"grant_type": "refresh_token", "refresh_token": env.refresh_token or ""},
                    auth=(env.client_id, env.client_secret),
                )

    async def _wait(self, index: int, step: Wait) -> None:
        def enough(_event: Event) -> bool:
            return self.timeline.count(actor=step.actor, kind=step.event) >= step.count

        try:
            await self.timeline.wait_for(enough, timeout=step.timeout)
        except TimeoutError:
            who = f"{step.actor} " if step.actor else ""
            self.problems.append(
                f"step {index}: waited {step.timeout:g} s for {step.count} x {who}{step.event}"
            )
            self.timeline.record("runner", "wait.timeout", event=step.event)

    # -- an external client's side of the protocol ----------------------------------------------

    def check_runner_step(self, index: int) -> None:
        """Refuse a runner step an external client asks for out of turn."""
        step = self.steps[index]
        if not is_runner_step(step):
            raise ProtocolViolation(
                f"step {index} ({describe_step(step)}) is the client's to perform", 400
            )
        for earlier in range(index):
            before = self.steps[earlier]
            if is_runner_step(before) and earlier not in self.ran:
                raise ProtocolViolation(
                    f"step {earlier} ({describe_step(before)}) must run before step {index}"
                )
            if _expected_reports(before) and not _in_background(before):
                missing = _expected_reports(before) - self._reports(earlier)
                if missing > 0:
                    raise ProtocolViolation(
                        f"step {earlier} ({describe_step(before)}) still owes {missing} "
                        f"report(s); a runner step comes after the client steps before it"
                    )

    def _reports(self, index: int) -> int:
        return sum(1 for r in self.records if r.index == index)

    def report_call(self, index: int, report: Mapping[str, Any]) -> int:
        step = self.steps[index]
        expected = _expected_reports(step)
        if not expected:
            raise ProtocolViolation(f"step {index} ({describe_step(step)}) is not a call", 400)
        done = self._reports(index)
        if done >= expected:
            raise ProtocolViolation(
                f"step {index} ({describe_step(step)}) takes {expected} report(s); this is one more"
            )
        label = f"burst {done + 1}/{expected}" if isinstance(step, Burst) else None
        record = self._record(index, label)
        status = report.get("status")
        progress = report.get("progress") or []
        ok = report.get("ok") is True
        request_id = report.get("id")
        record.abandoned = report.get("abandoned") is True
        record.request_id = None if request_id is None else str(request_id)
        record.outcome = CallOutcome(
            status=status if isinstance(status, int) else (200 if ok else None),
            result={} if ok else None,
            error=None if ok else str(report.get("error") or "failed"),
            progress=[float(p) for p in progress],
            request_id=record.request_id,
        )
        record.end_seq = self.timeline.next_seq
        self.timeline.record(
            "client",
            "call.abandoned" if record.abandoned else "call.result" if ok else "call.error",
            request_id=record.request_id,
            status=record.outcome.status,
            step=index,
        )
        if done + 1 == expected and index in self._reported:
            future = self._reported[index]
            if not future.done():
                future.set_result(None)
        return expected - done - 1

    def client_event(self, name: str, step: int | None, detail: Mapping[str, Any]) -> int:
        # Only plain detail: the timeline's own fields (a token is fingerprinted) are not the
        # client's to set.
        fields: dict[str, Any] = {k: v for k, v in detail.items() if k not in _RESERVED}
        if step is not None:
            fields["step"] = step
        return self.timeline.record("client", name, **fields).seq

    def command_ran(self, run: CommandRun) -> None:
        self.command = run

    def client_started(self, seconds: float) -> None:
        self.startup = seconds

    async def _join_reports(self, index: int, step: Join) -> None:
        """An external client's join: move the clock each time something sleeps on it until
        every background call before the join is reported (bounded by the join's timeout)."""
        waiting: list[asyncio.Future[None]] = []
        loop = asyncio.get_running_loop()
        for earlier in range(index):
            before = self.steps[earlier]
            if not _in_background(before) or self._reports(earlier) >= _expected_reports(before):
                continue
            future = self._reported.setdefault(earlier, loop.create_future())
            waiting.append(future)
        if not waiting:
            return
        await drive_clock(self.env.clock, advance=step.advance, timeout=step.timeout, until=waiting)
        for earlier, future in self._reported.items():
            if future in waiting and not future.done():
                self.problems.append(
                    f"step {earlier} ({describe_step(self.steps[earlier])}) was not reported "
                    f"by the join at step {index} ({step.timeout:g} s)"
                )

    async def finish(self) -> None:
        if self.background:
            await self._join(1.0, STEP_TIMEOUT)
        for opener in self.openers:
            opener.cancel()
        await asyncio.gather(*self.openers, return_exceptions=True)


def _in_background(step: Step) -> bool:
    return isinstance(step, Stream) or (isinstance(step, Call) and step.background)


def _result_of(task: asyncio.Task[CallOutcome]) -> CallOutcome:
    if task.cancelled():
        return CallOutcome(status=None, error="cancelled")
    exc = task.exception()
    if exc is not None:
        return CallOutcome(status=None, error=f"{type(exc).__name__}: {exc}")
    return task.result()


async def _gathered(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    # Awaited inside a coroutine: when a timeout cancels it, the gather's own cancellation is
    # read here. Handed to wait_for bare, a cancelled gather is left holding a CancelledError
    # nobody retrieves, and asyncio logs "_GatheringFuture exception was never retrieved".
    return await asyncio.gather(*awaitables)
