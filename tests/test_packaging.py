"""``pip install freshtoken`` (no extras) gives the proxy and no test framework.

A fresh virtual environment gets this checkout installed the way a user installs it (pip reuses
its wheel cache, so this is quick after the first run). Then pytest alone is added, as in a
project that has its own tests but not the harness: the plugin must load, leave unrelated tests
alone, and tell a test that asks for a freshtoken fixture what to install.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

from freshtoken._extras import HARNESS_EXTRA, HARNESS_MODULES

ROOT = Path(__file__).resolve().parents[1]
TEST_FRAMEWORK = {"pytest", "pytest-asyncio", "hypothesis", "respx", "trustme"}


def _run(*argv: str | Path, ok: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=300, **kwargs
    )  # type: ignore[call-overload]
    if ok:
        assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done  # type: ignore[no-any-return]


def test_plain_install_has_the_proxy_and_no_test_framework(tmp_path: Path) -> None:
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    python, bin_dir = env_dir / "bin" / "python", env_dir / "bin"
    pip = (python, "-m", "pip", "--disable-pip-version-check")
    _run(*pip, "install", "--quiet", ROOT)

    listed = json.loads(_run(*pip, "list", "--format=json").stdout)
    installed = {package["name"].lower() for package in listed}
    assert "freshtoken" in installed
    assert not TEST_FRAMEWORK & installed, TEST_FRAMEWORK & installed

    _run(python, "-c", "import freshtoken.proxy")
    # The SDK subjects' adapters are package data, installed beside the modules.
    subjects = "import freshtoken, pathlib; d = pathlib.Path(freshtoken.__file__).parent"
    for adapter in ("python_sdk.py", "typescript_sdk/client.mjs", "typescript_sdk/package.json"):
        _run(python, "-c", f"{subjects}; assert (d / 'scenarios/subjects/{adapter}').is_file()")
    assert "--config" in _run(bin_dir / "freshtoken", "proxy", "--help").stdout

    config = tmp_path / "proxy.toml"
    config.write_text(
        '[targets.demo]\nurl = "http://127.0.0.1:9/mcp"\n'
        '[targets.demo.token]\ntype = "static"\ntoken = "not-a-real-token"\n'
    )
    proxy = subprocess.Popen(
        [bin_dir / "freshtoken", "proxy", "--config", config],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proxy.stdout is not None
        name, url = proxy.stdout.readline().split()
        assert name == "demo"
        assert url.startswith("http://127.0.0.1:")
    finally:
        proxy.send_signal(signal.SIGTERM)
        _, stderr = proxy.communicate(timeout=30)
    assert proxy.returncode == 0, stderr

    for command in ("scenarios", "fakes"):
        refused = _run(bin_dir / "freshtoken", command, "list", ok=False)
        assert refused.returncode == 2
        assert refused.stderr.strip().endswith(HARNESS_EXTRA), refused.stderr

    # A project with its own tests and pytest, but not the harness.
    _run(*pip, "install", "--quiet", "pytest")
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_mine.py").write_text(
        "def test_plain():\n    assert True\n\n"
        "def test_wants_the_fakes(freshtoken_client):\n    pass\n"
    )
    result = _run(
        python,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        cwd=project,
        ok=False,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert result.returncode == 1, result.stdout
    assert "1 passed, 1 error" in result.stdout
    assert "freshtoken_client needs the harness extra" in result.stdout
    assert HARNESS_EXTRA in result.stdout
    assert sys.executable not in result.stdout  # it ran the fresh environment's pytest


def test_the_extras_module_knows_every_package_of_the_harness_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    harness = project["optional-dependencies"]["harness"]
    names = {re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower() for requirement in harness}  # type: ignore[union-attr]
    assert names - {"pytest"} == set(HARNESS_MODULES.values())
    dependencies = {
        re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in project["dependencies"]
    }  # type: ignore[union-attr]
    assert not dependencies & (TEST_FRAMEWORK | names)
