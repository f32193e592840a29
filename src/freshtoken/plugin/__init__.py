"""The pytest plugin (entry point ``pytest11``): fixtures, the ``freshtoken`` marker, options,
the scenario catalogue as test items and the timeline section on failing reports.

Importing it is cheap and needs nothing but pytest: the fixtures are registered when pytest is
configured, and the fakes, the proxy and the scenario engine load only when a fixture or the
catalogue needs them. The fakes and the proxy run on their own event loop in a background
thread, so the fixtures work in sync tests, pytest-asyncio (any mode, any loop scope) and anyio
(asyncio and trio) alike. Without the harness extra (``pip install 'freshtoken[harness]'``) the
plugin still loads; its fixtures and options then fail with what to install.
"""

from __future__ import annotations

from freshtoken.plugin._config import FreshtokenConfig
from freshtoken.plugin._hooks import (
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_runtest_makereport,
    pytest_runtest_setup,
)
from freshtoken.plugin._remote import RemoteCall
from freshtoken.plugin._types import (
    AuthServerFactory,
    Credentials,
    MCPServerFactory,
    ProxyFactory,
)

__all__ = [
    "AuthServerFactory",
    "Credentials",
    "FreshtokenConfig",
    "MCPServerFactory",
    "ProxyFactory",
    "RemoteCall",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_runtest_makereport",
    "pytest_runtest_setup",
]
