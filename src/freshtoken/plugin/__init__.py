"""The pytest plugin (entry point ``pytest11``): fixtures, the ``freshtoken`` marker, options,
the scenario catalogue as test items and the timeline section on failing reports.

Importing it is cheap: the fakes, the proxy and the scenario engine load only when a fixture or
the catalogue needs them.
"""

from __future__ import annotations

from freshtoken.plugin._config import FreshtokenConfig
from freshtoken.plugin._fixtures import (
    AuthServerFactory,
    MCPServerFactory,
    ProxyFactory,
    freshtoken_auth_server,
    freshtoken_auth_server_factory,
    freshtoken_ca,
    freshtoken_client,
    freshtoken_clock,
    freshtoken_config,
    freshtoken_faults,
    freshtoken_mcp_server,
    freshtoken_mcp_server_factory,
    freshtoken_mcp_url,
    freshtoken_proxy,
    freshtoken_proxy_factory,
    freshtoken_timeline,
)
from freshtoken.plugin._fixtures import (
    _freshtoken_created as _freshtoken_created,
)
from freshtoken.plugin._hooks import (
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_runtest_makereport,
    pytest_runtest_setup,
)

__all__ = [
    "AuthServerFactory",
    "FreshtokenConfig",
    "MCPServerFactory",
    "ProxyFactory",
    "freshtoken_auth_server",
    "freshtoken_auth_server_factory",
    "freshtoken_ca",
    "freshtoken_client",
    "freshtoken_clock",
    "freshtoken_config",
    "freshtoken_faults",
    "freshtoken_mcp_server",
    "freshtoken_mcp_server_factory",
    "freshtoken_mcp_url",
    "freshtoken_proxy",
    "freshtoken_proxy_factory",
    "freshtoken_timeline",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_runtest_makereport",
    "pytest_runtest_setup",
]
