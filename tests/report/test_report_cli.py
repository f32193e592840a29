"""``freshtoken scenarios run --html/--diagram`` and ``scenarios show NAME --diagram``."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_helpers import parse, sections

from freshtoken.cli import main

SEED = "seed-stale-bearer-after-rotation"


def _diagram_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(("  ", ">>")) and "|" in line]


def test_run_writes_the_html_report_and_prints_diagrams(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report.html"
    code = main(
        ["scenarios", "run", SEED, "--subject", "baked-bearer", "--html", str(report), "--diagram"]
    )
    assert code == 1
    out = capsys.readouterr().out
    assert f"{SEED} on baked-bearer: FAILED" in out
    assert "every_call_answered" in out
    # The diagram replaces the raw timeline: lanes as columns, the failure pinned.
    assert out.count(">>") == 2
    assert "<<< every_call_answered" in out
    assert "STALE]" in out
    assert "1700000000.000" not in out  # no raw timeline lines
    assert _diagram_lines(out)
    [section] = sections(parse(report.read_text(encoding="utf-8")))
    assert section.attrs["data-outcome"] == "failed"
    assert section.find("svg", cls="diagram")


def test_run_without_diagram_keeps_the_timeline(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios", "run", SEED, "--subject", "baked-bearer"]) == 1
    out = capsys.readouterr().out
    assert "timeline:" in out
    assert "<<<" not in out


def test_show_draws_the_diagram_of_one_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios", "show", SEED, "--diagram"]) == 0
    out = capsys.readouterr().out
    assert 'reproduces = "PostHog/code PR #1713"' in out
    assert f"{SEED} on proxy: pass" in out
    header = next(
        line for line in out.splitlines() if line.split() == ["client", "proxy", "mcp", "auth"]
    )
    assert header
    assert "replay: tools/call echo" in out


def test_show_diagram_with_an_unknown_subject_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["scenarios", "show", SEED, "--diagram", "--subject", "nobody"]) == 2
    assert "nobody" in capsys.readouterr().err
