"""Which optional parts are installed: the proxy needs no test framework, the harness does.

``pip install freshtoken`` gives the proxy; the fakes, the scenario harness and the pytest
plugin's fixtures need the ``harness`` extra. Front ends (the CLI, the pytest plugin) ask here
before loading them, so a missing extra is one clear line, not an import traceback.
"""

from __future__ import annotations

import importlib.util
from typing import Final

__all__ = ["HARNESS_EXTRA", "HARNESS_MODULES", "harness_missing", "needs_harness"]

HARNESS_EXTRA: Final = "pip install 'freshtoken[harness]'"
"""The command that installs what the harness needs."""

HARNESS_MODULES: Final = {
    "hypothesis": "hypothesis",
    "httpx_aiohttp": "httpx-aiohttp",
    "jsonschema": "jsonschema",
    "jwt": "pyjwt",
    "pytest_asyncio": "pytest-asyncio",
    "respx": "respx",
    "tomli_w": "tomli-w",
    "trustme": "trustme",
}
"""Import name → distribution name of the harness extra's third-party packages (pytest itself
aside: without it there is no plugin to load). Keep in step with the ``harness`` extra in
``pyproject.toml`` (a test compares them)."""


def harness_missing() -> list[str]:
    """The distributions of the harness extra that cannot be imported (none: all installed), sorted."""
    return sorted(
        distribution
        for module, distribution in HARNESS_MODULES.items()
        if importlib.util.find_spec(module) is None
    )


def needs_harness(what: str, missing: list[str]) -> str:
    """The one-line message for ``what`` when ``missing`` distributions are not installed."""
    return (
        f"{what} needs the harness extra, which is not installed "
        f"(missing: {', '.join(missing)}): {HARNESS_EXTRA}"
    )
