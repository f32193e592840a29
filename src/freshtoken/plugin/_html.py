"""``--freshtoken-html PATH``: the HTML report of a pytest run, a sequence diagram per test.

Registered only when asked for (as pytest's own JUnit writer is). Each test's timeline travels
on its teardown report as plain data, so the same code works in one process and under
pytest-xdist, where reports reach the controller from the workers.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from freshtoken.plugin._hooks import timeline_key

if TYPE_CHECKING:
    from freshtoken.scenarios import ReportItem, ScenarioResult

__all__ = ["HTML_PLUGIN_NAME", "HtmlReport", "scenario_result_key"]

HTML_PLUGIN_NAME = "freshtoken-html"
_PROPERTY = "freshtoken_report_item"

scenario_result_key: pytest.StashKey[ScenarioResult] = pytest.StashKey()
"""A catalogue item's run, so the report can pin its failed invariants to their events."""


_Outcome = Literal["passed", "failed", "not applicable"]


@dataclass
class _Entry:
    nodeid: str
    outcome: _Outcome = "passed"
    duration: float = 0.0
    output: list[str] = field(default_factory=list)
    message: str = ""
    payload: dict[str, Any] | None = None


class HtmlReport:
    """Collects every test's outcome and freshtoken timeline; writes the report at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, _Entry] = {}
        self.started = time.monotonic()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        # Teardown is the last phase: by then the timeline holds everything the test did.
        if report.when == "teardown":
            payload = _payload(item)
            if payload is not None:
                report.user_properties.append((_PROPERTY, payload))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.entries.setdefault(report.nodeid, _Entry(report.nodeid))
        entry.duration += report.duration
        if report.failed:
            entry.outcome = "failed"
            crash = getattr(report.longrepr, "reprcrash", None)
            entry.message = entry.message or str(getattr(crash, "message", "") or "")
            entry.output.append(f"[{report.when}] {report.longreprtext}")
        elif report.skipped and entry.outcome != "failed":
            entry.outcome = "not applicable"
            entry.output.append(f"[skipped] {report.longreprtext}")
        for name, value in report.user_properties:
            if name == _PROPERTY and isinstance(value, dict):
                entry.payload = value

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(session.config, "workerinput"):
            return  # a pytest-xdist worker: the controller writes the report
        from freshtoken.scenarios import write_html

        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_html(
            [self._item(entry) for entry in self.entries.values()],
            self.path,
            title="freshtoken report: pytest run",
            versions={"pytest": pytest.__version__},
            duration=time.monotonic() - self.started,
        )

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_sep("-", f"freshtoken HTML report: {self.path}")

    def _item(self, entry: _Entry) -> ReportItem:
        from freshtoken.scenarios import ReportItem

        base = ReportItem.from_dict(entry.payload) if entry.payload else None
        failures = base.failures if base is not None else ()
        if entry.outcome == "failed" and not failures:
            # A plain test: what it asserted is the invariant; name it by the exception.
            first = (entry.message or (entry.output[0].splitlines() or ["failed"])[0]).strip()
            kind = first.split(":", 1)[0]
            name = (
                "assertion" if kind == "AssertionError" else kind if kind.isidentifier() else "test"
            )
            failures = ((name, first),)
        return ReportItem(
            name=entry.nodeid,
            outcome=entry.outcome,
            events=base.events if base is not None else (),
            failures=failures if entry.outcome == "failed" else (),
            pins=base.pins if base is not None else {},
            subject=base.subject if base is not None else "",
            duration=entry.duration,
            title=base.title if base is not None else "",
            reproduces=base.reproduces if base is not None else "",
            protocol_version=base.protocol_version if base is not None else "",
            output="\n".join(entry.output),
        )


def _payload(item: pytest.Item) -> dict[str, Any] | None:
    result = item.stash.get(scenario_result_key, None)
    timeline = item.stash.get(timeline_key, None)
    if result is None and timeline is None:
        return None
    from freshtoken.scenarios import ReportItem

    if result is not None:
        return ReportItem.from_result(result).to_dict()
    assert timeline is not None
    return ReportItem(name=item.nodeid, outcome="passed", events=tuple(timeline.events)).to_dict()
