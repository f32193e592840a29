"""Stand-ins for the fixtures when the harness extra is not installed.

The plugin still loads (it is registered by installing freshtoken, which may have been for the
proxy alone), so an unrelated test suite keeps working; a test that asks for a freshtoken fixture
fails with what to install instead of an import error.
"""

from __future__ import annotations

import types
from typing import Any, NoReturn

import pytest

from freshtoken._extras import needs_harness

__all__ = ["FIXTURE_NAMES", "stub_fixtures"]

FIXTURE_NAMES = (
    "freshtoken_auth_server",
    "freshtoken_auth_server_factory",
    "freshtoken_ca",
    "freshtoken_client",
    "freshtoken_clock",
    "freshtoken_config",
    "freshtoken_credentials",
    "freshtoken_faults",
    "freshtoken_mcp_server",
    "freshtoken_mcp_server_factory",
    "freshtoken_mcp_url",
    "freshtoken_proxy",
    "freshtoken_proxy_factory",
    "freshtoken_timeline",
)
"""The plugin's public fixtures (a test checks they match the real ones)."""


def _stub(name: str, message: str) -> Any:
    def fixture() -> NoReturn:
        raise pytest.UsageError(message)

    fixture.__name__ = fixture.__qualname__ = name
    fixture.__doc__ = f"Unavailable: {message}"
    return pytest.fixture(name=name)(fixture)


def stub_fixtures(missing: list[str]) -> types.ModuleType:
    """A plugin to register in place of the fixtures when ``missing`` distributions are absent:
    a module (pytest reads a plugin's fixtures from its module namespace) with one failing
    fixture per public name."""
    plugin = types.ModuleType(f"{__name__}.stand_ins", __doc__)
    for name in FIXTURE_NAMES:
        setattr(plugin, name, _stub(name, needs_harness(f"the fixture {name}", missing)))
    return plugin
