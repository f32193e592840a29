"""``freshtoken scenarios scoreboard``: the catalogue against several subjects as one matrix
(scenario by subject: pass, FAIL with the failed invariants, n/a with the reason), in Markdown and
JSON; and ``run --subject python-sdk|typescript-sdk [--via-proxy]``."""

from __future__ import annotations

import json
import os
import shutil
from importlib import metadata
from pathlib import Path

import pytest

from freshtoken import __version__
from freshtoken.cli import main
from freshtoken.scenarios import TYPESCRIPT_SDK_VERSION

SEED = "seed-stale-bearer-after-rotation"
CONCURRENT = "concurrent-401s-single-refresh"
JSONRPC = "auth-failure-200-jsonrpc"
ROWS = ["python-sdk", "python-sdk via proxy", "typescript-sdk", "typescript-sdk via proxy"]


def _need_node() -> None:
    if shutil.which("node") and shutil.which("npm"):
        return
    if os.environ.get("CI"):
        pytest.fail("node and npm are needed in CI for the typescript-sdk subject")
    pytest.skip("node or npm is not installed")


def _cells(board: dict[str, object]) -> dict[tuple[str, str], dict[str, object]]:
    cells = board["cells"]
    assert isinstance(cells, list)
    return {(c["scenario"], c["subject"]): c for c in cells}


def test_the_default_scoreboard_is_both_sdks_direct_and_through_the_proxy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _need_node()
    report, markdown = tmp_path / "board.json", tmp_path / "board.md"
    code = main(
        [
            "scenarios",
            "scoreboard",
            SEED,
            CONCURRENT,
            JSONRPC,
            "--json",
            str(report),
            "--markdown",
            str(markdown),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "12 runs in" in out
    board = json.loads(report.read_text())
    assert [s["label"] for s in board["subjects"]] == ROWS
    versions = {s["label"]: (s["sdk"], s["sdk_version"]) for s in board["subjects"]}
    assert versions["python-sdk"] == ("mcp", metadata.version("mcp"))
    assert versions["typescript-sdk via proxy"] == (
        "@modelcontextprotocol/sdk",
        TYPESCRIPT_SDK_VERSION,
    )
    assert board["scenarios"] == [SEED, CONCURRENT, JSONRPC]
    cells = _cells(board)
    outcomes = {key: cell["outcome"] for key, cell in cells.items()}
    assert outcomes == {
        # The Python SDK asks for a login on a 401 (python-sdk #1318).
        (SEED, "python-sdk"): "failed",
        (SEED, "python-sdk via proxy"): "passed",
        (SEED, "typescript-sdk"): "passed",
        (SEED, "typescript-sdk via proxy"): "passed",
        (CONCURRENT, "python-sdk"): "failed",
        (CONCURRENT, "python-sdk via proxy"): "passed",
        # One refresh per failing request (no single flight).
        (CONCURRENT, "typescript-sdk"): "failed",
        (CONCURRENT, "typescript-sdk via proxy"): "passed",
        # An auth failure inside a 200 is a proxy's to read: a client is not judged on it.
        (JSONRPC, "python-sdk"): "not applicable",
        (JSONRPC, "python-sdk via proxy"): "passed",
        (JSONRPC, "typescript-sdk"): "not applicable",
        (JSONRPC, "typescript-sdk via proxy"): "passed",
    }
    failed = cells[(CONCURRENT, "typescript-sdk")]["failed"]
    assert isinstance(failed, list)
    names = [f["name"] for f in failed]
    assert {"max_token_requests", "no_refresh_reuse"} <= set(names)
    # One refresh per failing call that saw the old token: how many of the eight did depends on
    # how the calls interleave with the first refresh (eight on a quiet machine).
    grants = cells[(CONCURRENT, "typescript-sdk")]["grants"]
    assert set(grants) == {"refresh_token"}
    count = grants["refresh_token"]
    assert 2 <= count <= 8
    assert any(f["reason"].startswith(f"{count} token requests > 1") for f in failed)
    assert "judges a token-injecting proxy" in str(cells[(JSONRPC, "python-sdk")]["reason"])

    text = markdown.read_text()
    assert text.startswith(
        f"freshtoken {__version__}, {board['date']}; python-sdk: mcp {metadata.version('mcp')}; "
        f"typescript-sdk: @modelcontextprotocol/sdk {TYPESCRIPT_SDK_VERSION}\n"
    )
    assert "| scenario | " + " | ".join(ROWS) + " |" in text
    seed_row = next(line for line in text.splitlines() if line.startswith(f"| {SEED} |"))
    assert seed_row == f"| {SEED} | **FAIL** `every_call_answered` | pass | pass | pass |"
    assert "| **total** | 0 pass, 2 fail, 1 n/a | 3 pass, 0 fail, 0 n/a |" in text
    assert (
        f"- {CONCURRENT} on typescript-sdk: `max_token_requests`: {count} token requests > 1"
        in text
    )
    # The printed board is the written one.
    assert text.strip() in out


def test_any_subjects_make_a_scoreboard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "board.json"
    argv = ["scenarios", "scoreboard", SEED, "dns-rebinding-refused", "--json", str(report)]
    code = main([*argv, "--subject", "proxy", "--subject", "baked-bearer", "--jobs", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    board = json.loads(report.read_text())
    assert [s["label"] for s in board["subjects"]] == ["proxy", "baked-bearer"]
    assert [s["sdk"] for s in board["subjects"]] == [None, None]
    assert board["jobs"] == 2
    outcomes = {key: cell["outcome"] for key, cell in _cells(board).items()}
    assert outcomes == {
        (SEED, "proxy"): "passed",
        (SEED, "baked-bearer"): "failed",
        ("dns-rebinding-refused", "proxy"): "passed",
        # A token layer standing in for a proxy, with no Host/Origin guard of its own: the
        # foreign Origin reaches the MCP server (which refusing it does not excuse).
        ("dns-rebinding-refused", "baked-bearer"): "failed",
    }
    progress = [line for line in out.splitlines() if line.startswith("[")]
    assert sorted(line.split("] ", 1)[1].rsplit(" (", 1)[0] for line in progress) == sorted(
        [
            f"{SEED} on proxy: pass",
            f"{SEED} on baked-bearer: FAIL",
            "dns-rebinding-refused on proxy: pass",
            "dns-rebinding-refused on baked-bearer: FAIL",
        ]
    )


def test_direct_only_and_through_the_proxy_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "board.json"
    base = ["scenarios", "scoreboard", SEED, "--subject", "python-sdk", "--json", str(report)]
    assert main([*base, "--via-proxy"]) == 0
    assert [s["label"] for s in json.loads(report.read_text())["subjects"]] == [
        "python-sdk via proxy"
    ]
    assert main([*base, "--direct", "--subject", "proxy"]) == 0
    assert [s["label"] for s in json.loads(report.read_text())["subjects"]] == [
        "python-sdk",
        "proxy",
    ]
    capsys.readouterr()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--subject", "nope"], "unknown subject 'nope'"),
        (["no-such-scenario"], "unknown scenario 'no-such-scenario'"),
        (["--subject", "command"], "--subject command: needs --command CMD"),
    ],
)
def test_a_bad_subject_or_scenario_exits_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scenarios", "scoreboard", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--jobs", "0"], "must be at least 1"), (["--direct", "--via-proxy"], "not allowed with")],
)
def test_bad_options_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["scenarios", "scoreboard", *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_without_node_the_typescript_sdk_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    assert main(["scenarios", "run", SEED, "--subject", "typescript-sdk"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "freshtoken scenarios: --subject typescript-sdk: node is not installed "
        "(Node.js 18 or newer is needed)"
    )
    assert main(["scenarios", "scoreboard", SEED]) == 2
    assert "node is not installed" in capsys.readouterr().err


def test_run_an_sdk_subject_through_the_proxy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report.json"
    argv = ["scenarios", "run", SEED, "--subject", "python-sdk", "--json", str(report)]
    assert main(argv) == 1
    assert "seed-stale-bearer-after-rotation on python-sdk ... FAIL" in capsys.readouterr().out
    (direct,) = json.loads(report.read_text())
    rotated = next(e["seq"] for e in direct["timeline"] if e["kind"] == "tokens.rotated")
    assert not [
        e
        for e in direct["timeline"]
        if e["seq"] > rotated and e["kind"] == "token.request" and e["actor"] == "as"
    ]
    assert main([*argv, "--via-proxy"]) == 0
    (through,) = json.loads(report.read_text())
    assert through["outcome"] == "passed"
    assert through["grants"] == {"refresh_token": 1}
    # The old spelling still works.
    assert main([*argv, "--command-via-proxy"]) == 0
    capsys.readouterr()
