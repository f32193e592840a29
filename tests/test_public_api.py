from __future__ import annotations

import importlib
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest


def _ruff_order(name: str) -> tuple[int, list[str | int]]:
    """ruff's isort-style order for ``__all__``: CONSTANTS, then Classes, then functions, each
    in natural order (``Status5xx`` before ``Status400``)."""
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


PACKAGES = [
    "freshtoken",
    "freshtoken.fakes",
    "freshtoken.proxy",
    "freshtoken.scenarios",
    "freshtoken.cli",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_matches_public_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_ruff_order), f"{name}.__all__ is not sorted"
    for attr in exported:
        getattr(module, attr)  # a name loaded on first use (RotationMachine) is public too
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and not isinstance(value, types.ModuleType)
        and attr != "annotations"
    }
    assert set(exported) == public


@pytest.mark.parametrize("name", PACKAGES)
def test_exported_names_have_public_module_docs(name: str) -> None:
    module = importlib.import_module(name)
    for attr in module.__all__:
        value = getattr(module, attr)
        if isinstance(value, type) or callable(value):
            assert value.__doc__, f"{name}.{attr} has no docstring"


@pytest.mark.parametrize("name", ["freshtoken.scenarios", "freshtoken.proxy"])
def test_lazy_names_each_have_one_home(name: str) -> None:
    # A package whose names load on first use lists each name's submodule: every public name
    # has one, and it is where the name is defined (or re-exported from).
    module = importlib.import_module(name)
    where = module._WHERE
    assert set(where) == set(module.__all__)
    for attr, home in where.items():
        assert getattr(module, attr) is getattr(importlib.import_module(f"{name}.{home}"), attr)
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        module.nonexistent  # noqa: B018


def test_the_fixtures_harness_loads_without_the_rest() -> None:
    # What the pytest fixtures import on first use: the harness and the built-in client, not
    # the runner, the reports, the subjects, the proxy's config reader and login flow, nor
    # Hypothesis (each costs a fresh process tens of milliseconds before its first test).
    code = (
        "import sys\n"
        "from freshtoken.scenarios import CallOutcome, Harness, McpClient\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert {"freshtoken.scenarios._harness", "freshtoken.scenarios._client"} <= loaded
    assert "freshtoken.proxy._proxy" in loaded
    unwanted = {
        "hypothesis",
        "freshtoken.scenarios._runner",
        "freshtoken.scenarios._html",
        "freshtoken.scenarios._command",
        "freshtoken.scenarios._strategies",
        "freshtoken.scenarios._sdk_subjects",
        "freshtoken.proxy._config",
        "freshtoken.proxy._login",
    }
    assert loaded & unwanted == set()


def test_type_checkers_see_the_lazy_names_and_catch_a_misspelt_one(tmp_path: Path) -> None:
    # The packages' lazy __getattr__ is hidden from type checkers: they read the real imports,
    # so a typo in an import is an error, not a silent Any.
    from mypy import api

    user = tmp_path / "user.py"
    user.write_text(
        "from freshtoken.proxy import Proxy, Proxxy\n"
        "from freshtoken.scenarios import Harness\n"
        "proxy: Proxy = Proxy()\n"
        "harness: Harness = Harness()\n"
    )
    out, _, status = api.run(["--strict", "--no-incremental", "--cache-dir=/dev/null", str(user)])
    assert status == 1, out
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 1, out
    assert 'Module "freshtoken.proxy" has no attribute "Proxxy"' in errors[0]
