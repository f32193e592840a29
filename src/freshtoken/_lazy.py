"""Package attributes that import their submodule on first use (PEP 562).

A package lists each public name with the submodule that defines it; ``from package import
Name`` then imports that submodule only. The pytest fixtures start faster for it: they load the
harness, not the runner, the reports, the login flow or Hypothesis.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, namespace: dict[str, Any], where: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``where`` maps each public name to the
    submodule (relative, e.g. ``"_harness"``) that defines it; a loaded name is cached in the
    package's ``namespace`` so it is looked up once."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where})

    return __getattr__, __dir__
