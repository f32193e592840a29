"""The scoreboard: the catalogue against several subjects, as one matrix.

Each cell is one scenario run on one subject (pass, fail with its failed invariants, or not
applicable with the reason), from the same runner and verdicts as ``scenarios run``. Runs are
independent (each has its own fakes, ports and clock), so a few go side by side.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from freshtoken import __version__
from freshtoken.scenarios._model import Scenario
from freshtoken.scenarios._runner import ScenarioResult, run_scenario
from freshtoken.scenarios._session import Subject

__all__ = ["SCOREBOARD_JOBS", "Scoreboard", "ScoreboardColumn", "run_scoreboard", "subject_label"]

SCOREBOARD_JOBS: Final = 4
"""Runs side by side: an external client spends most of a run starting up, not on the CPU."""
_SHORT: Final = {"passed": "pass", "failed": "FAIL", "not applicable": "n/a"}
_REASON_CHARS: Final = 300
"""How much of a failed check's reason a Markdown failure line keeps (the JSON has it all)."""


def subject_label(subject: Subject) -> str:
    """The subject as a scoreboard column names it: its name, with ``via proxy`` for a client
    given freshtoken's proxy's URL."""
    via = bool(getattr(subject, "via_proxy", False))
    return f"{subject.name} via proxy" if via else subject.name


@dataclass(frozen=True)
class ScoreboardColumn:
    """One subject of a scoreboard: its ``label``, and the SDK it ran (``sdk``, ``version``;
    empty for subjects that are not an SDK client)."""

    label: str
    subject: str
    via_proxy: bool = False
    sdk: str = ""
    version: str = ""

    @classmethod
    def of(cls, subject: Subject) -> ScoreboardColumn:
        return cls(
            label=subject_label(subject),
            subject=subject.name,
            via_proxy=bool(getattr(subject, "via_proxy", False)),
            sdk=str(getattr(subject, "sdk", "")),
            version=str(getattr(subject, "sdk_version", "")),
        )


@dataclass(frozen=True)
class Scoreboard:
    """Scenario by subject → result. ``results[scenario][label]`` is the run of that scenario on
    the column labelled ``label``; ``date`` is when the run started (UTC), ``duration`` its real
    seconds."""

    columns: tuple[ScoreboardColumn, ...]
    scenarios: tuple[str, ...]
    results: Mapping[str, Mapping[str, ScenarioResult]]
    date: str
    duration: float
    freshtoken: str = __version__
    jobs: int = SCOREBOARD_JOBS

    def result(self, scenario: str, label: str) -> ScenarioResult:
        return self.results[scenario][label]

    def outcome(self, scenario: str, label: str) -> str:
        """``passed``, ``failed`` or ``not applicable``."""
        return self.result(scenario, label).outcome

    def counts(self, label: str) -> dict[str, int]:
        """How many scenarios passed, failed and did not apply on the column ``label``."""
        counts = {"passed": 0, "failed": 0, "not applicable": 0}
        for scenario in self.scenarios:
            counts[self.outcome(scenario, label)] += 1
        return counts

    def to_markdown(self) -> str:
        """The matrix as a Markdown table (a failed cell lists its failed invariants), the
        totals, then one line per failure with what went wrong."""
        labels = [c.label for c in self.columns]
        # One note per subject: its rows directly and through the proxy ran the same SDK.
        notes = dict.fromkeys(_column_note(c) for c in self.columns)
        lines = [
            f"freshtoken {self.freshtoken}, {self.date}; " + "; ".join(notes),
            "",
            "| scenario | " + " | ".join(labels) + " |",
            "|---|" + "---|" * len(labels),
        ]
        for scenario in self.scenarios:
            cells = [_cell(self.result(scenario, label)) for label in labels]
            lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
        totals = []
        for label in labels:
            n = self.counts(label)
            totals.append(f"{n['passed']} pass, {n['failed']} fail, {n['not applicable']} n/a")
        lines.append("| **total** | " + " | ".join(totals) + " |")
        failures = [
            (scenario, label)
            for scenario in self.scenarios
            for label in labels
            if self.result(scenario, label).failed
        ]
        if failures:
            lines += ["", "Failures:", ""]
            for scenario, label in failures:
                for check in self.result(scenario, label).failures:
                    reason = check.reason
                    if len(reason) > _REASON_CHARS:
                        reason = reason[: _REASON_CHARS - 1] + "…"
                    lines.append(f"- {scenario} on {label}: `{check.name}`: {reason}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """Every cell with its outcome, the reason it does not apply, each failed check with its
        reason, the token requests by grant type and the run's duration."""
        return {
            "freshtoken": self.freshtoken,
            "date": self.date,
            "duration": round(self.duration, 3),
            "jobs": self.jobs,
            "subjects": [
                {
                    "label": c.label,
                    "subject": c.subject,
                    "via_proxy": c.via_proxy,
                    "sdk": c.sdk or None,
                    "sdk_version": c.version or None,
                    **self.counts(c.label),
                }
                for c in self.columns
            ],
            "scenarios": list(self.scenarios),
            "cells": [
                _cell_json(scenario, c.label, self.result(scenario, c.label))
                for scenario in self.scenarios
                for c in self.columns
            ],
        }

    def write_markdown(self, path: str | Path) -> None:
        Path(path).write_text(self.to_markdown() + "\n", encoding="utf-8")

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")


def _column_note(column: ScoreboardColumn) -> str:
    if column.sdk:
        return f"{column.subject}: {column.sdk} {column.version}"
    return column.subject


def _cell(result: ScenarioResult) -> str:
    if result.failed:
        return "**FAIL** " + ", ".join(f"`{c.name}`" for c in result.failures)
    return _SHORT[result.outcome]


def _cell_json(scenario: str, label: str, result: ScenarioResult) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "subject": label,
        "outcome": result.outcome,
        "reason": result.not_applicable,
        "failed": [{"name": c.name, "reason": c.reason} for c in result.failures],
        "protocol_version": result.scenario.setup.protocol_version,
        "token_requests": result.token_requests,
        "grants": dict(result.grants),
        "duration": round(result.duration, 3),
    }


async def run_scoreboard(
    scenarios: Sequence[Scenario],
    subjects: Sequence[Subject],
    *,
    jobs: int = SCOREBOARD_JOBS,
    progress: Callable[[ScenarioResult, str], None] | None = None,
) -> Scoreboard:
    """Run every scenario on every subject, ``jobs`` runs at a time, and collect the matrix.

    ``progress`` hears about each run as it ends (its result and its column's label). Subject
    labels (see :func:`subject_label`) must be distinct.
    """
    columns = tuple(ScoreboardColumn.of(s) for s in subjects)
    labels = [c.label for c in columns]
    if len(set(labels)) != len(labels):
        raise ValueError(f"the subjects' labels are not distinct: {labels}")
    gate = asyncio.Semaphore(max(jobs, 1))
    results: dict[str, dict[str, ScenarioResult]] = {s.name: {} for s in scenarios}
    started = time.monotonic()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")

    async def run(scenario: Scenario, subject: Subject, label: str) -> None:
        async with gate:
            result = await run_scenario(scenario, subject)
        results[scenario.name][label] = result
        if progress is not None:
            progress(result, label)

    # Scenario by scenario, each on every subject: a slow subject does not hold up the rest.
    await asyncio.gather(
        *(
            run(scenario, subject, label)
            for scenario in scenarios
            for subject, label in zip(subjects, labels, strict=True)
        )
    )
    return Scoreboard(
        columns=columns,
        scenarios=tuple(s.name for s in scenarios),
        results=results,
        date=date,
        duration=time.monotonic() - started,
        jobs=jobs,
    )
