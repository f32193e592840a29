"""The types of the factory fixtures, importable without the harness installed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from freshtoken.fakes import FakeAuthorizationServer, FakeMCPServer
    from freshtoken.proxy import Proxy

__all__ = ["AuthServerFactory", "MCPServerFactory", "ProxyFactory"]


class AuthServerFactory(Protocol):
    """What ``freshtoken_auth_server_factory`` is: ``await make(**kwargs)``."""

    async def __call__(self, **kwargs: Any) -> FakeAuthorizationServer:
        """Start a fake authorization server (``FakeAuthorizationServer`` keyword arguments)."""
        ...


class MCPServerFactory(Protocol):
    """What ``freshtoken_mcp_server_factory`` is: ``await make(**kwargs)``."""

    async def __call__(self, **kwargs: Any) -> FakeMCPServer:
        """Start a fake MCP server (``FakeMCPServer`` keyword arguments)."""
        ...


class ProxyFactory(Protocol):
    """What ``freshtoken_proxy_factory`` is: ``await make(**kwargs)``."""

    async def __call__(self, **kwargs: Any) -> Proxy:
        """Start a proxy (``Proxy`` keyword arguments)."""
        ...
