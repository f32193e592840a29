from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from freshtoken._extras import HARNESS_EXTRA, HARNESS_MODULES
from freshtoken.cli import main

SEED = "seed-stale-bearer-after-rotation"


def test_list_shows_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios", "list"]) == 0
    out = capsys.readouterr().out
    assert SEED in out
    assert len(out.splitlines()) >= 20


def test_show_prints_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios", "show", SEED]) == 0
    out = capsys.readouterr().out
    assert 'reproduces = "PostHog/code PR #1713"' in out


def test_run_passes_on_proxy_with_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junit, report = tmp_path / "junit.xml", tmp_path / "report.json"
    code = main(
        [
            "scenarios",
            "run",
            SEED,
            "auth-failure-200-jsonrpc",
            "--junit",
            str(junit),
            "--json",
            str(report),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "[1/2] seed-stale-bearer-after-rotation on proxy ... pass" in out
    assert "2 passed, 0 failed (of 2)" in out
    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == "2"
    assert suite.get("failures") == "0"
    data = json.loads(report.read_text())
    assert [d["scenario"] for d in data] == [SEED, "auth-failure-200-jsonrpc"]
    assert [d["outcome"] for d in data] == ["passed", "passed"]
    assert data[0]["token_requests"] == 1
    assert data[0]["timeline"]


def test_run_fails_on_baked_bearer_and_prints_the_timeline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junit = tmp_path / "junit.xml"
    code = main(["scenarios", "run", SEED, "--subject", "baked-bearer", "--junit", str(junit)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL" in out
    assert "every_call_answered" in out
    assert "auth.rejected" in out
    assert "timeline:" in out
    assert ET.parse(junit).getroot().find("testcase/failure") is not None


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["scenarios", "run", "no-such-scenario"], "unknown scenario 'no-such-scenario'"),
        (["scenarios", "run", "--subject", "nobody"], "unknown subject 'nobody'"),
        (["scenarios", "run", "--subject", "command"], "needs --command"),
        (["scenarios", "list", "--catalogue", "/nonexistent/dir"], "not a scenario directory"),
        (["scenarios", "run", "--jobs", "2", "-v"], "-v shows one scenario at a time"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    argv: list[str], reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert reason in err
    assert len(err.splitlines()) == 1


def test_user_catalogue_directory_and_malformed_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mine.toml").write_text(
        'title = "mine"\nreproduces = "here"\n[[steps]]\nstep = "initialize"\n[[steps]]\nstep = "call"\n'
    )
    assert main(["scenarios", "run", "mine", "--catalogue", str(tmp_path)]) == 0
    assert "1 passed, 0 failed (of 1)" in capsys.readouterr().out
    bad = tmp_path / "broken.toml"
    bad.write_text('[[steps]]\nstep = "call"\ntool = 7\n')
    assert main(["scenarios", "list", "--catalogue", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"freshtoken scenarios: {bad}: steps[0].tool: Input should be a valid string"


README_CLIENT = Path(__file__).parents[1] / "scenarios" / "readme_client.py"


def test_command_subject_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    command = f"{sys.executable} {README_CLIENT}"
    argv = ["scenarios", "run", SEED, "--subject", "command", "--command", command]
    assert main(argv) == 1
    assert main([*argv, "--command-via-proxy"]) == 0
    assert "1 passed, 0 failed (of 1)" in capsys.readouterr().out


def test_scenarios_that_do_not_apply_are_counted_apart_and_skipped_in_junit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junit, report = tmp_path / "junit.xml", tmp_path / "report.json"
    command = f"{sys.executable} {README_CLIENT}"
    argv = ["scenarios", "run", "dns-rebinding-refused", "client-disconnect-cancels-upstream"]
    argv += ["--subject", "command", "--command", command, "--command-via-proxy"]
    code = main([*argv, "--junit", str(junit), "--json", str(report)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "client-disconnect-cancels-upstream on command ... n/a" in out
    assert "1 passed, 0 failed, 1 not applicable (of 2)" in out
    assert "client-disconnect-cancels-upstream: needs MCP revision 2026-07-28" in out
    suite = ET.parse(junit).getroot()
    assert suite.get("skipped") == "1"
    assert suite.get("failures") == "0"
    skipped = suite.find("testcase[@name='client-disconnect-cancels-upstream']/skipped")
    assert skipped is not None
    assert "2026-07-28" in skipped.get("message", "")
    data = {d["scenario"]: d for d in json.loads(report.read_text())}
    assert data["client-disconnect-cancels-upstream"]["outcome"] == "not applicable"
    assert "2026-07-28" in data["client-disconnect-cancels-upstream"]["reason"]
    assert data["dns-rebinding-refused"]["outcome"] == "passed"
    assert data["dns-rebinding-refused"]["command"]["status"] == 0


def test_a_command_that_cannot_start_is_one_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["scenarios", "run", "--subject", "command", "--command", "no-such-client --x"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert lines == [
        "freshtoken scenarios: --command: cannot run 'no-such-client': not found on PATH"
    ]


def test_log_lines_go_to_the_report_not_between_progress_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report.json"
    names = ["invalid-grant-terminal", SEED]
    assert main(["scenarios", "run", *names, "--json", str(report)]) == 0
    captured = capsys.readouterr()
    assert "credentials refused" not in captured.out + captured.err
    progress = [line for line in captured.out.splitlines() if line.startswith("[")]
    assert progress[0].startswith("[1/2] invalid-grant-terminal on proxy ... pass (")
    assert progress[1].startswith(f"[2/2] {SEED} on proxy ... pass (")
    data = json.loads(report.read_text())
    assert any("credentials refused" in line for line in data[0]["log"])
    assert data[1]["log"] == []

    assert main(["scenarios", "run", "invalid-grant-terminal", "-v"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[1/1] invalid-grant-terminal on proxy ..."
    refused = [i for i, line in enumerate(lines) if "credentials refused" in line]
    verdict = next(i for i, line in enumerate(lines) if line.strip().startswith("pass ("))
    assert refused
    assert all(0 < i < verdict for i in refused)
    assert all(lines[i].startswith("    ") for i in refused)


def test_jobs_run_scenarios_side_by_side_each_with_its_own_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The three scenarios whose proxy logs a refused grant, among others: run four at a time,
    # each report keeps exactly its own log lines, and the reports keep the catalogue's order.
    names = [
        SEED,
        "invalid-grant-terminal",
        "concurrent-401s-single-refresh",
        "lost-token-response-no-grace",
        "auth-failure-200-jsonrpc",
        "replayed-refresh-token-revokes-family",
    ]
    one, four = tmp_path / "one.json", tmp_path / "four.json"
    assert main(["scenarios", "run", *names, "--json", str(one)]) == 0
    assert main(["scenarios", "run", *names, "--jobs", "4", "--json", str(four)]) == 0
    out = capsys.readouterr().out
    progress = [line for line in out.splitlines() if line.startswith("[")]
    assert len(progress) == 2 * len(names)
    # With jobs, a line per finished run: counted as they finish, each whole.
    parallel = progress[len(names) :]
    assert [line.split("]")[0] for line in parallel] == [f"[{i}/6" for i in range(1, 7)]
    assert all(line.split(" ... ")[1].startswith("pass (") for line in parallel)
    assert sorted(line.split()[1] for line in parallel) == sorted(names)
    sequential, side_by_side = json.loads(one.read_text()), json.loads(four.read_text())
    assert [r["scenario"] for r in side_by_side] == names
    for alone, together in zip(sequential, side_by_side, strict=True):
        assert together["outcome"] == "passed"
        assert len(together["log"]) == len(alone["log"]), together["scenario"]
        assert all("credentials refused" in line for line in together["log"])
    assert [len(r["log"]) > 0 for r in side_by_side] == [False, True, False, True, False, True]


def test_without_the_harness_extra_scenarios_and_fakes_exit_2_and_proxy_works(
    tmp_path: Path,
) -> None:
    # The harness's packages are hidden (None in sys.modules), as if never installed.
    (tmp_path / "sitecustomize.py").write_text(
        f"import sys\nfor name in {sorted(HARNESS_MODULES)!r}:\n    sys.modules[name] = None\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def freshtoken(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "freshtoken", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    missing = ", ".join(sorted(HARNESS_MODULES.values()))
    for command in ("scenarios", "fakes"):
        done = freshtoken(command, "list")
        assert done.returncode == 2, done.stderr
        line = done.stderr.strip()
        assert line.startswith(f"freshtoken {command} needs the harness extra"), line
        assert line.endswith(f": {HARNESS_EXTRA}"), line
        assert len(line.splitlines()) == 1
        assert set(line.split("(missing: ")[1].split(")")[0].split(", ")) <= set(
            missing.split(", ")
        )
    proxy = freshtoken("proxy", "--help")
    assert proxy.returncode == 0, proxy.stderr
    assert "--config" in proxy.stdout
