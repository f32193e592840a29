"""Reports of scenario runs: a summary table, JUnit XML and JSON."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from freshtoken.scenarios._runner import ScenarioResult

__all__ = ["summary_table", "write_json", "write_junit"]

_SHORT = {"passed": "pass", "failed": "FAIL", "not applicable": "n/a"}
# What XML 1.0 cannot carry (a client's output may hold terminal escapes or NULs).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def summary_table(results: Sequence[ScenarioResult]) -> str:
    """One line per run (scenario, result, token requests, upstream sends, duration), the counts,
    then why each scenario that does not apply does not."""
    width = max([len("scenario"), *(len(r.scenario.name) for r in results)])
    lines = [f"{'scenario':<{width}}  result  tokens  upstream  duration"]
    for r in results:
        if r.not_applicable is not None:
            lines.append(f"{r.scenario.name:<{width}}  {'n/a':<6}  {'-':>6}  {'-':>8}  {'-':>8}")
            continue
        lines.append(
            f"{r.scenario.name:<{width}}  {_SHORT[r.outcome]:<6}  "
            f"{r.token_requests:>6}  {r.upstream_sends:>8}  {r.duration:>7.2f}s"
        )
    passed = sum(r.passed for r in results)
    failed = sum(r.failed for r in results)
    skipped = [r for r in results if r.not_applicable is not None]
    counts = f"{passed} passed, {failed} failed"
    if skipped:
        counts += f", {len(skipped)} not applicable"
    lines.append(f"{counts} (of {len(results)})")
    if skipped:
        lines.append("")
        lines.append("not applicable:")
        lines += [f"  {r.scenario.name}: {r.not_applicable}" for r in skipped]
    return "\n".join(lines)


def _as_dict(result: ScenarioResult) -> dict[str, Any]:
    command = result.command
    return {
        "scenario": result.scenario.name,
        "subject": result.subject,
        "reproduces": result.scenario.reproduces,
        "property": result.scenario.property,
        "outcome": result.outcome,
        "passed": result.passed,
        "reason": result.not_applicable,
        "protocol_version": result.scenario.setup.protocol_version,
        "error": result.error,
        "checks": [{"name": c.name, "passed": c.passed, "reason": c.reason} for c in result.checks],
        "token_requests": result.token_requests,
        "grants": dict(result.grants),
        "upstream_sends": result.upstream_sends,
        "client_calls": result.client_calls,
        "duration": round(result.duration, 4),
        "command": None
        if command is None
        else {
            "argv0": command.argv0,
            "status": command.status,
            "timed_out": command.timed_out,
            "killed": command.cancelled,
            "clock": command.clock,
            "output": command.output,
            "output_dropped_bytes": command.dropped,
            "violations": list(command.violations),
        },
        "log": list(result.log),
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
    """Every run with its outcome, checks, counts, the client's output and log lines, and the
    timeline (tokens only as fingerprints)."""
    Path(path).write_text(json.dumps([_as_dict(r) for r in results], indent=2) + "\n")


def write_junit(results: Sequence[ScenarioResult], path: str | Path) -> None:
    """A JUnit XML report: one test case per run, the timeline as the failure text, a scenario
    that does not apply as skipped, the client's output and log lines as ``system-out``."""
    suite = ET.Element(
        "testsuite",
        name="freshtoken scenarios",
        tests=str(len(results)),
        failures=str(sum(r.failed for r in results)),
        skipped=str(sum(r.not_applicable is not None for r in results)),
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
        if r.not_applicable is not None:
            ET.SubElement(case, "skipped", message=_xml(r.not_applicable))
        elif not r.passed:
            failure = ET.SubElement(
                case,
                "failure",
                message=_xml("; ".join(f"{c.name}: {c.reason}" for c in r.failures)),
            )
            failure.text = _xml(r.format_failures())
        out = r.output + ("\n".join(r.log) + "\n" if r.log else "")
        if out:
            ET.SubElement(case, "system-out").text = _xml(out)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
