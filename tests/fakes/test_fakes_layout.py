"""The fakes stand alone: they import only root modules, and no module grows into a god module."""

from __future__ import annotations

import ast
from pathlib import Path

import freshtoken.fakes

FAKES = Path(freshtoken.fakes.__file__).parent
SIBLINGS = ("proxy", "scenarios", "plugin", "cli")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            modules.add(node.module)
    return modules


def test_fakes_import_no_sibling_subpackage() -> None:
    modules = sorted(FAKES.glob("*.py"))
    assert len(modules) > 10
    for path in modules:
        for module in _imported_modules(path):
            parts = module.split(".")
            if parts[0] != "freshtoken" or len(parts) == 1:
                continue
            assert parts[1] == "fakes" or parts[1].startswith("_"), f"{path.name} imports {module}"
            assert parts[1] not in SIBLINGS


def test_no_fakes_module_is_over_500_lines() -> None:
    sizes = {path.name: len(path.read_text().splitlines()) for path in FAKES.glob("*.py")}
    assert max(sizes.values()) <= 500, sizes
