"""Run one scenario against one subject on fresh fakes, and judge it from what the fakes saw."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from freshtoken._errors import ConfigError, ServerSideError
from freshtoken._timeline import Timeline
from freshtoken.scenarios._applicability import ANY_SUBJECT, SubjectProfile, fit
from freshtoken.scenarios._harness import Harness
from freshtoken.scenarios._model import Scenario
from freshtoken.scenarios._play import ScenarioPlay
from freshtoken.scenarios._session import CommandRun, Environment, Subject
from freshtoken.scenarios._subjects import get_subject
from freshtoken.scenarios._verdicts import CheckResult, judge

__all__ = ["CheckResult", "Outcome", "ScenarioResult", "run_scenario", "run_scenario_sync"]

Outcome = Literal["passed", "failed", "not applicable"]


@dataclass(frozen=True)
class ScenarioResult:
    """What running a scenario against a subject showed.

    ``not_applicable`` is the reason the scenario does not apply to the subject (nothing ran);
    ``command`` is how an external client's process ended and what it printed; ``log`` holds
    the log lines a front end captured during the run.
    """

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
    not_applicable: str | None = None
    command: CommandRun | None = None
    log: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return (
            self.not_applicable is None
            and self.error is None
            and all(check.passed for check in self.checks)
        )

    @property
    def failed(self) -> bool:
        return self.not_applicable is None and not self.passed

    @property
    def outcome(self) -> Outcome:
        if self.not_applicable is not None:
            return "not applicable"
        return "passed" if self.passed else "failed"

    @property
    def output(self) -> str:
        """What the external client printed (empty for in-process subjects)."""
        return self.command.output if self.command is not None else ""

    @property
    def failures(self) -> list[CheckResult]:
        failed = [check for check in self.checks if not check.passed]
        if self.error is not None:
            failed.insert(0, CheckResult("run", False, self.error))
        return failed

    def format_failures(self) -> str:
        """The failed checks, the client's last output lines and log lines, then the timeline:
        what a report prints for a failing run."""
        lines = [f"{self.scenario.name} on {self.subject}: FAILED"]
        lines += [f"  {check.name}: {check.reason}" for check in self.failures]
        if self.command is not None and self.command.output.strip():
            lines.append(f"  output of {self.command.argv0} (last lines):")
            lines += ["    " + line for line in self.command.tail().splitlines()]
        if self.log:
            lines.append("  log:")
            lines += ["    " + line for line in self.log]
        lines.append("  timeline:")
        lines += ["    " + line for line in self.timeline.format().splitlines()]
        return "\n".join(lines)


def profile_of(subject: Subject) -> SubjectProfile:
    """What ``subject`` declares itself to be (a subject without a profile fits everything)."""
    profile = getattr(subject, "profile", ANY_SUBJECT)
    return profile if isinstance(profile, SubjectProfile) else ANY_SUBJECT


async def run_scenario(scenario: Scenario, subject: Subject | str = "proxy") -> ScenarioResult:
    """Run ``scenario`` against ``subject`` on fresh fakes (manual clock, one timeline).

    A scenario that does not apply to the subject (see :func:`fit`) is not run: the result says
    why. Never raises for a misbehaving subject: failures, hangs and crashes are in the result;
    a subject that cannot be used at all (a command that cannot start) raises
    :class:`ConfigError`.
    """
    if isinstance(subject, str):
        subject = get_subject(subject)
    fitted = fit(scenario, profile_of(subject))
    if isinstance(fitted, str):
        return ScenarioResult(
            scenario=scenario,
            subject=subject.name,
            checks=(),
            token_requests=0,
            upstream_sends=0,
            client_calls=0,
            duration=0.0,
            timeline=Timeline(),
            not_applicable=fitted,
        )
    scenario = fitted
    # An external client's start-up (an interpreter importing its SDK) is not the scenario's.
    budget = scenario.invariants.max_duration + float(getattr(subject, "startup_allowance", 0.0))
    harness = Harness(scenario.setup, proxy=False)
    timeline = harness.timeline
    started = time.monotonic()
    error: str | None = None
    play: ScenarioPlay | None = None
    try:
        async with harness:
            play = ScenarioPlay(scenario, Environment.of(scenario, harness))
            async with subject.session(play.env) as session:
                try:
                    await asyncio.wait_for(session.play(play), budget)
                except TimeoutError:
                    play.problems.append(
                        f"the steps did not finish within {scenario.invariants.max_duration:g} s"
                    )
                await play.finish()
    except ConfigError:
        raise
    except ServerSideError as exc:
        error = f"fake server error: {exc}"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    duration = time.monotonic() - started
    seen = harness.authorization_server.token_requests_seen() if play is not None else []
    checks = judge(scenario, play, harness.authorization_server, duration) if play else []
    grants = Counter(request.grant_type or "(none)" for request in seen)
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
        command=play.command if play is not None else None,
    )


def run_scenario_sync(scenario: Scenario, subject: Subject | str = "proxy") -> ScenarioResult:
    """:func:`run_scenario` from synchronous code (its own event loop; not inside a running one)."""
    return asyncio.run(run_scenario(scenario, subject))
