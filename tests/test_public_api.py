from __future__ import annotations

import importlib
import re
import types

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
