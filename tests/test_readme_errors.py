"""The README's error table shows what each configuration surface really answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from freshtoken import ConfigError
from freshtoken.fakes import FaultPlan, TokenPolicy
from freshtoken.plugin import FreshtokenConfig

README = Path(__file__).resolve().parents[1] / "README.md"


def _table() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## One error format")
    return text[start : text.index("\n## ", start + 1)]


def _cli(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "freshtoken", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    return done.stderr.strip()


def _raised(build: object) -> str:
    with pytest.raises(ConfigError) as excinfo:
        build()  # type: ignore[operator]
    return str(excinfo.value)


def test_every_row_is_what_the_code_says(tmp_path: Path) -> None:
    (tmp_path / "proxy.toml").write_text(
        '[limits]\nconnect_timeout = -1\n[targets.demo]\nurl = "http://127.0.0.1:9/mcp"\n'
        '[targets.demo.token]\ntype = "static"\ntoken = "abc"\n'
    )
    (tmp_path / "my-scenarios").mkdir()
    (tmp_path / "my-scenarios" / "my.toml").write_text(
        '[setup]\naccess_ttl = 0\n[[steps]]\nstep = "initialize"\n'
    )
    lines = [
        _cli(tmp_path, "proxy", "--config", "proxy.toml"),
        _cli(tmp_path, "scenarios", "run", "--catalogue", "my-scenarios"),
        _raised(
            lambda: FaultPlan.from_dict(
                {"faults": [{"action": {"kind": "status-5xx", "status": 450.5}}]}
            )
        ),
        _raised(lambda: FreshtokenConfig().apply_markers([((), {"access_ttl": 0})])),
        _raised(lambda: TokenPolicy(access_ttl=0)),
    ]
    table = _table()
    for line in lines:
        assert f"| `{line}` |" in table, line
