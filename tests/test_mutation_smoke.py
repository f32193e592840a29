"""The mutation benchmark still runs end to end (two mutants, a small suite; no score is judged)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "mutation.py"


@pytest.mark.timeout(300)
def test_mutation_script_reports_both_scores_and_every_survivor(tmp_path: Path) -> None:
    out, markdown = tmp_path / "mutation.json", tmp_path / "mutation.md"
    argv = [
        sys.executable,
        str(SCRIPT),
        "--sample=2",
        "--module=_guards.py",
        "--suite=tests/proxy/test_proxy_forwarding.py",
        f"--json={out}",
        f"--markdown={markdown}",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=290, check=False)
    assert done.returncode == 0, done.stderr[-4000:]

    report = json.loads(out.read_text())
    assert report["modules"] == ["_guards.py"]
    assert report["generated"]["_guards.py"] > 20
    assert not report["cut_short"]
    assert len(report["mutants"]) == 2
    for mutant in report["mutants"]:
        assert mutant["module"] == "_guards.py"
        assert mutant["catalogue"] in ("killed", "survived")
        assert mutant["suite"] in ("killed", "survived")
        # The diff shows the line the mutant changed.
        assert mutant["text"].replace(" ", "") in mutant["diff"].replace(" ", "")
    text = markdown.read_text()
    assert "| the catalogue (`freshtoken scenarios run`) |" in text
    assert "| `_guards.py` |" in text
    survivors = [m for m in report["mutants"] if not m["killed"]]
    for mutant in survivors:
        assert f"`_guards.py:{mutant['line']}`" in text
