"""Reports of scenario runs: a summary table, JUnit XML and JSON."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from freshtoken.scenarios._runner import ScenarioResult

__all__ = ["summary_table", "write_json", "write_junit"]


def summary_table(results: Sequence[ScenarioResult]) -> str:
    """One line per run: scenario, result, token requests, upstream sends, duration."""
    width = max([len("scenario"), *(len(r.scenario.name) for r in results)])
    lines = [f"{'scenario':<{width}}  result  tokens  upstream  duration"]
    for r in results:
        lines.append(
            f"{r.scenario.name:<{width}}  {'pass' if r.passed else 'FAIL':<6}  "
            f"{r.token_requests:>6}  {r.upstream_sends:>8}  {r.duration:>7.2f}s"
        )
    passed = sum(r.passed for r in results)
    lines.append(f"{passed} of {len(results)} passed")
    return "\n".join(lines)


def _as_dict(result: ScenarioResult) -> dict[str, Any]:
    return {
        "scenario": result.scenario.name,
        "subject": result.subject,
        "reproduces": result.scenario.reproduces,
        "passed": result.passed,
        "error": result.error,
        "checks": [{"name": c.name, "passed": c.passed, "reason": c.reason} for c in result.checks],
        "token_requests": result.token_requests,
        "grants": dict(result.grants),
        "upstream_sends": result.upstream_sends,
        "client_calls": result.client_calls,
        "duration": round(result.duration, 4),
        "timeline": [
            {
                "seq": e.seq,
                "time": e.time,
                "actor": e.actor,
                "kind": e.kind,
                "request_id": e.request_id,
                "token": e.token,
                "status": e.status,
                "detail": {k: _jsonable(v) for k, v in e.detail.items()},
            }
            for e in result.timeline.events
        ],
    }


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def write_json(results: Sequence[ScenarioResult], path: str | Path) -> None:
    """Every run with its checks, counts and timeline (tokens only as fingerprints)."""
    Path(path).write_text(json.dumps([_as_dict(r) for r in results], indent=2) + "\n")


def write_junit(results: Sequence[ScenarioResult], path: str | Path) -> None:
    """A JUnit XML report: one test case per run, the timeline as the failure text."""
    suite = ET.Element(
        "testsuite",
        name="freshtoken scenarios",
        tests=str(len(results)),
        failures=str(sum(not r.passed for r in results)),
        time=f"{sum(r.duration for r in results):.3f}",
    )
    for r in results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"freshtoken.scenarios.{r.subject}",
            name=r.scenario.name,
            time=f"{r.duration:.3f}",
        )
        if not r.passed:
            failure = ET.SubElement(
                case,
                "failure",
                message="; ".join(f"{c.name}: {c.reason}" for c in r.failures),
            )
            failure.text = r.format_failures()
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
