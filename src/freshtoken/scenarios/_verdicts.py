"""Judging a run from what the fakes observed.

Every verdict is computed from what the fake MCP server and the fake authorization server
recorded: tools/call requests by JSON-RPC id, whether each was refused or answered, the SSE events
written, initialize and GET requests, grants by type, reused refresh tokens; and from which runner
steps the runner actually performed. A subject's own account (an in-process client's outcome, an
external client's report) can fail a call or add detail (progress received, the status seen), but
it never turns a call the server did not see into a pass.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from freshtoken._timeline import Event, Timeline
from freshtoken.fakes import FakeAuthorizationServer
from freshtoken.scenarios._model import (
    Burst,
    Call,
    Initialize,
    OpenGetStream,
    Resume,
    Scenario,
    Step,
)
from freshtoken.scenarios._play import CallRecord, ScenarioPlay, describe_step, is_runner_step

__all__ = ["CheckResult", "judge"]

# The fake MCP server's fault actions that answer the request themselves (a refusal).
_TERMINAL_FAULTS = frozenset(
    {"status-401", "auth-failed-200", "status-403-scope", "status-400", "status-5xx"}
)


@dataclass(frozen=True)
class CheckResult:
    """One invariant's verdict, with the reason when it failed."""

    name: str
    passed: bool
    reason: str = ""


@dataclass
class _Attempt:
    seq: int
    request_id: str
    tool: str | None
    refused: bool = False
    statuses: list[int] = field(default_factory=list)
    """The HTTP statuses the server answered this attempt with."""

    @property
    def accepted(self) -> bool:
        """The server took the bearer and ran the tool (answered 200, refused nothing)."""
        return 200 in self.statuses and not self.refused


@dataclass
class ServerView:
    """What the fake MCP server recorded, indexed for the verdicts."""

    calls: list[_Attempt] = field(default_factory=list)
    requests: list[Event] = field(default_factory=list)
    sse_events: list[Event] = field(default_factory=list)
    refusals: list[Event] = field(default_factory=list)
    """Error answers to requests that never became one: the MCP server's own Origin guard, and
    what freshtoken's own proxy answered (it runs in-process: its records are the runner's)."""

    @classmethod
    def of(cls, timeline: Timeline, since: int, *, proxy: bool) -> ServerView:
        view = cls()
        latest: dict[str, _Attempt] = {}
        for event in timeline.select(since=since):
            if event.actor == "proxy" and proxy and event.kind == "response":
                view.refusals.append(event)
            if event.actor != "mcp":
                continue
            rid = event.request_id
            if event.kind == "response" and rid is None and (event.status or 0) >= 400:
                view.refusals.append(event)
            elif event.kind == "sse.event":
                view.sse_events.append(event)
            elif event.kind == "request":
                view.requests.append(event)
                if rid is None:
                    continue
                # Ids are per session: the newest request with an id is the one its events are about.
                latest.pop(rid, None)
                if event.detail.get("rpc_method") == "tools/call":
                    attempt = _Attempt(event.seq, rid, event.detail.get("tool"))
                    view.calls.append(attempt)
                    latest[rid] = attempt
            elif rid is None or rid not in latest:
                continue
            elif event.kind == "auth.rejected" or (
                event.kind == "fault" and event.detail.get("action") in _TERMINAL_FAULTS
            ):
                latest[rid].refused = True
            elif event.kind == "response" and event.status is not None:
                latest[rid].statuses.append(event.status)
        return view

    def requests_between(self, start: int, end: int | None) -> list[Event]:
        return [e for e in self.requests if e.seq >= start and (end is None or e.seq < end)]

    def refused(self, start: int, end: int | None, status: int | None) -> bool:
        """Whether an error (``status``, when given) was answered in the window by the MCP
        server before reading a request, or by freshtoken's proxy."""
        return any(
            e.seq >= start
            and (end is None or e.seq < end)
            and e.status is not None
            and (e.status == status if status is not None else e.status >= 400)
            for e in self.refusals
        )

    def reached_upstream(self, start: int, end: int | None) -> bool:
        """Whether any request reached the MCP server in the window, refused or not."""
        return bool(self.requests_between(start, end)) or any(
            e.actor == "mcp" and e.seq >= start and (end is None or e.seq < end)
            for e in self.refusals
        )

    def written(self, request_id: str, start: int) -> int:
        """How many distinct SSE events the server wrote on the streams of ``request_id``
        (resumptions included: a resumed stream keeps its id)."""
        streams = {
            e.detail.get("stream")
            for e in self.sse_events
            if e.request_id == request_id and e.seq >= start
        }
        return len(
            {
                (e.detail.get("stream"), e.detail.get("n"))
                for e in self.sse_events
                if e.detail.get("stream") in streams and e.seq >= start
            }
        )


Wanted = Callable[[list[_Attempt]], "_Attempt | None"]


def _accepted(attempts: list[_Attempt]) -> _Attempt | None:
    return next((a for a in attempts if a.accepted), None)


def _answered_with(status: int | None) -> Wanted:
    def wanted(attempts: list[_Attempt]) -> _Attempt | None:
        if status is None:
            return attempts[-1]
        return next((a for a in attempts if status in a.statuses), None)

    return wanted


class _Claims:
    """Matches reported calls to tools/call requests the server saw, each request id once."""

    def __init__(self, view: ServerView) -> None:
        self.view = view
        self.taken: set[tuple[str, int]] = set()

    def claim(
        self, record: CallRecord, start: int, wanted: Wanted
    ) -> tuple[_Attempt | None, int, int]:
        """The first unclaimed request for ``record`` seen after ``start`` that ``wanted``
        picks an attempt of: that attempt (or None), how many distinct matching requests were
        seen, and how many of them ``wanted`` passed over."""
        end = record.end_seq
        seen: dict[str, list[_Attempt]] = {}
        for attempt in self.view.calls:
            if attempt.seq < start or (end is not None and attempt.seq >= end):
                continue
            if attempt.tool != record.tool:
                continue
            if record.request_id is not None and attempt.request_id != record.request_id:
                continue
            seen.setdefault(attempt.request_id, []).append(attempt)
        passed_over = 0
        for rid, attempts in seen.items():
            first = attempts[0].seq
            if (rid, first) in self.taken:
                continue
            picked = wanted(attempts)
            if picked is None:
                passed_over += 1
                continue
            self.taken.add((rid, first))
            return picked, len(seen), passed_over
        return None, len(seen), passed_over


def _segment_start(play: ScenarioPlay, index: int) -> int:
    """Where a client step's requests can begin: after the last runner step before it."""
    ends = [end for i, (_, end) in play.ran.items() if i < index]
    return max(ends, default=play.first_seq)


def _check(name: str, problems: Iterable[str]) -> CheckResult:
    problems = list(problems)
    return CheckResult(name, not problems, "; ".join(problems))


def judge(
    scenario: Scenario,
    play: ScenarioPlay,
    authorization_server: FakeAuthorizationServer,
    duration: float,
) -> list[CheckResult]:
    """Every invariant of ``scenario`` for ``play``, from what the fakes saw."""
    timeline = play.timeline
    inv = scenario.invariants
    view = ServerView.of(timeline, play.first_seq, proxy=hasattr(play.harness, "proxy"))
    live = [r for r in play.records if not r.abandoned]
    checks: list[CheckResult] = []
    claimed: dict[int, _Attempt] = {}  # id(record) → the request it was matched to

    if inv.every_call_answered:
        checks.append(_check("every_call_answered", _answered(scenario, play, view, claimed)))
    if inv.status_passed_through:
        checks.append(
            _check(
                "status_passed_through",
                (
                    f"{r.label} (step {r.index}) saw status "
                    f"{r.outcome.status if r.outcome else None}, expected {r.expect_status}"
                    for r in live
                    if r.expect_status is not None
                    and (r.outcome is None or r.outcome.status != r.expect_status)
                ),
            )
        )
    checks.append(_check("steps_performed", _performed(scenario, play, view)))
    # Counts come from what the fake authorization server saw, never from the subject's events.
    token_requests = len(authorization_server.token_requests_seen())
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
        refreshes = (
            len(authorization_server.token_requests_seen("refresh_token")) - play.refresh_replays
        )
        checks.append(
            _check(
                "no_refresh", [f"{refreshes} refresh(es); none was called for"] if refreshes else []
            )
        )
    if inv.no_refresh_reuse:
        reuse = timeline.count(actor="as", kind="refresh.reuse", since=play.first_seq)
        checks.append(
            _check(
                "no_refresh_reuse",
                [f"the authorization server saw {reuse} reused refresh token(s)"] if reuse else [],
            )
        )
    if scenario.relogin_judged:
        checks.append(_check("no_relogin", _relogins(play, authorization_server)))
    if inv.max_upstream_sends_per_call is not None:
        limit = inv.max_upstream_sends_per_call
        sends = _sends_per_call(view)
        checks.append(
            _check(
                "max_upstream_sends_per_call",
                (
                    f"call id {rid} reached the MCP server {n} times (> {limit})"
                    for rid, n in sends.items()
                    if n > limit
                ),
            )
        )
    if inv.max_upstream_sends is not None:
        total = len(view.requests)
        checks.append(
            _check(
                "max_upstream_sends",
                [f"{total} upstream requests > {inv.max_upstream_sends}"]
                if total > inv.max_upstream_sends
                else [],
            )
        )
    if inv.max_auth_rejections is not None:
        rejected = timeline.select(actor="mcp", kind="auth.rejected", since=play.first_seq)
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
        checks.append(_check("sse_in_order", _sse(live, view, claimed)))
    if inv.upstream_cancelled:
        cancelled = timeline.count(actor="mcp", kind="stream.cancelled", since=play.first_seq)
        checks.append(
            _check(
                "upstream_cancelled",
                [] if cancelled else ["the MCP server never saw the abandoned stream cancelled"],
            )
        )
    if inv.cut_visible:
        clean = [
            e
            for e in timeline.select(actor="client", kind="stream.cut", since=play.first_seq)
            if not e.detail.get("broken")
        ]
        hidden = f"{len(clean)} cut stream(s) ended cleanly at the client, hiding the cut"
        checks.append(_check("cut_visible", [hidden] if clean else []))
    if play.command is not None:
        checks.append(_check("command", _command(play)))
    hang = list(play.problems)
    if duration - play.startup > inv.max_duration:
        after = f" after {play.startup:.2f} s of client start-up" if play.startup else ""
        hang.append(f"the run took {duration - play.startup:.2f} s{after} > {inv.max_duration:g} s")
    checks.append(_check("no_hang", hang))
    return checks


def _answered(
    scenario: Scenario, play: ScenarioPlay, view: ServerView, claimed: dict[int, _Attempt]
) -> list[str]:
    bad: list[str] = []
    reported = {r.index for r in play.records}
    for index, step in enumerate(scenario.steps):
        if step.kind in ("call", "stream", "burst") and index not in reported:
            bad.append(f"step {index} ({describe_step(step)}) was never reported")
    claims = _Claims(view)
    unseen: dict[int, list[str]] = {}
    for record in play.records:
        if record.abandoned:
            continue
        outcome = record.outcome
        where = f"{record.label} (step {record.index})"
        start = _segment_start(play, record.index)
        if outcome is None:
            bad.append(f"{where} got no answer")
        elif record.expect == "result" and not outcome.ok:
            bad.append(f"{where} failed: {outcome.error}")
        elif record.expect == "error" and outcome.ok:
            bad.append(f"{where} succeeded; expected an error")
        elif record.expect == "result":
            attempt, seen, refused = claims.claim(record, start, _accepted)
            if attempt is not None:
                claimed[id(record)] = attempt
                continue
            if not seen:
                why = f"no tools/call {record.tool} reached it"
            else:
                why = f"it refused the {refused} tools/call {record.tool} it saw"
            unseen.setdefault(record.index, []).append(why)
        elif record.expect == "error":
            status = record.expect_status
            attempt, _, _ = claims.claim(record, start, _answered_with(status))
            if attempt is None and not view.refused(start, record.end_seq, status):
                answered = (
                    f"answered a tools/call {record.tool} with {status}"
                    if status
                    else (f"saw a tools/call {record.tool}")
                )
                bad.append(
                    f"{where} reported the expected error, but neither the MCP server nor "
                    f"freshtoken's proxy {answered} there"
                )
            guarded = _guard_headers(scenario.steps[record.index])
            asked = start if record.start_seq is None else record.start_seq
            if guarded and view.reached_upstream(asked, record.end_seq):
                bad.append(
                    f"{where} sent {guarded}: the MCP server saw the request, so the local "
                    f"proxy did not refuse it itself"
                )
    for index, whys in unseen.items():
        step = scenario.steps[index]
        if isinstance(step, Burst):
            bad.append(
                f"step {index} ({describe_step(step)}): {step.n} calls reported a result, but "
                f"the MCP server answered only {step.n - len(whys)} distinct tools/call "
                f"{step.tool} there"
            )
        else:
            bad.append(
                f"step {index} ({describe_step(step)}) reported a result the MCP server never "
                f"gave: {whys[0]}"
            )
    return bad


def _guard_headers(step: Step) -> str:
    """What a call step sends for the local guard to refuse (a foreign Origin, a Host that is
    not loopback), described; empty for any other step."""
    if not isinstance(step, Call):
        return ""
    sent = [f"Origin {step.origin}"] if step.origin is not None else []
    sent += [f"Host {step.host}"] if step.host is not None else []
    return " and ".join(sent)


def _performed(scenario: Scenario, play: ScenarioPlay, view: ServerView) -> list[str]:
    bad: list[str] = []
    external = play.command is not None
    for index, step in enumerate(scenario.steps):
        runner = is_runner_step(step) if external else not step.client_step
        if runner and index not in play.ran:
            who = "the client never asked for it" if external else "the run ended first"
            bad.append(f"step {index} ({describe_step(step)}) never ran: {who}")
            continue
        if runner:
            continue
        # From the runner step before it on: a client library may open its GET stream by itself,
        # a moment after initializing, when the next runner step has already begun.
        requests = view.requests_between(_segment_start(play, index), None)
        if isinstance(step, Initialize) and not play.stateless:
            if not any(e.detail.get("rpc_method") == "initialize" for e in requests):
                bad.append(f"step {index} (initialize): the MCP server saw no initialize request")
        elif isinstance(step, OpenGetStream | Resume) and not any(
            e.detail.get("http_method") == "GET"
            or e.detail.get("rpc_method") == "subscriptions/listen"
            for e in requests
        ):
            bad.append(f"step {index} ({step.kind}): the MCP server saw no GET stream opened")
    return bad


def _sse(live: Sequence[CallRecord], view: ServerView, claimed: dict[int, _Attempt]) -> list[str]:
    bad: list[str] = []
    for record in live:
        if record.stream_count is None or record.outcome is None:
            continue
        where = f"{record.label} (step {record.index})"
        progress = record.outcome.progress
        if any(b <= a for a, b in itertools.pairwise(progress)):
            bad.append(f"{where} got events out of order: {progress}")
            continue
        if record.outcome.ok and len(progress) != record.stream_count:
            bad.append(f"{where} got {len(progress)} of {record.stream_count} progress events")
            continue
        attempt = claimed.get(id(record))
        if attempt is not None and progress:
            # The reply itself is one of the events written; progress is the rest.
            written = view.written(attempt.request_id, attempt.seq) - 1
            if len(progress) > written:
                bad.append(
                    f"{where} claims {len(progress)} progress events; the MCP server wrote "
                    f"{max(written, 0)} on that stream"
                )
    return bad


def _sends_per_call(view: ServerView) -> dict[str, int]:
    counts: dict[str, int] = {}
    for attempt in view.calls:
        counts[attempt.request_id] = counts.get(attempt.request_id, 0) + 1
    return counts


def _relogins(play: ScenarioPlay, server: FakeAuthorizationServer) -> list[str]:
    """Interactive grants that recovered an access token while a usable refresh token was held,
    replayed from the authorization server's own records in order."""
    logins = [r for r in server.token_requests_seen("authorization_code") if r.status == 200]
    if not logins:
        return []
    usable: dict[str, str] = {}  # family → its current refresh token (fingerprint)
    bad: list[str] = []
    step = -1
    # From the start of the run: the seeded grant was issued before the first step.
    for event in play.timeline.select():
        if event.actor == "runner" and event.kind == "step":
            step = int(event.detail.get("index", step))
        if event.actor != "as":
            continue
        family = str(event.detail.get("family", ""))
        if event.kind == "token.issued" and event.detail.get("refresh"):
            usable[family] = str(event.detail["refresh"])
        elif event.kind == "family.revoked":
            usable.pop(family, None)
        elif event.kind == "token.expired" and event.detail.get("type") == "refresh":
            if usable.get(family) == event.token:
                usable.pop(family)
        elif (
            event.kind == "token.request"
            and event.detail.get("grant_type") == "authorization_code"
            and event.status == 200
            and usable
        ):
            after = f" after step {step}" if step >= 0 else ""
            bad.append(
                f"re-login: an access token was recovered by an interactive authorization_code "
                f"grant{after} while a valid refresh token was held "
                f"({', '.join(sorted(usable.values()))}); a refresh grant was called for"
            )
    return bad[: len(logins)]


def _command(play: ScenarioPlay) -> list[str]:
    run = play.command
    assert run is not None
    bad = list(run.violations)
    if run.timed_out:
        bad.append(f"{run.argv0} was still running at the deadline and was killed")
    elif run.cancelled:
        bad.append(f"{run.argv0} was killed when the run ended")
    elif run.status:
        tail = run.tail(1)
        bad.append(f"{run.argv0} exited with status {run.status}" + (f": {tail}" if tail else ""))
    return bad
