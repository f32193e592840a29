"""The types of the fixtures' values, importable without the harness installed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from freshtoken._timeline import fingerprint

if TYPE_CHECKING:
    from freshtoken.fakes import FakeAuthorizationServer, FakeMCPServer
    from freshtoken.proxy import Proxy

__all__ = ["AuthServerFactory", "Credentials", "MCPServerFactory", "ProxyFactory"]


class AuthServerFactory(Protocol):
    """What ``freshtoken_auth_server_factory`` is: ``make(**kwargs)``."""

    def __call__(self, **kwargs: Any) -> FakeAuthorizationServer:
        """Start a fake authorization server (``FakeAuthorizationServer`` keyword arguments)."""
        ...


class MCPServerFactory(Protocol):
    """What ``freshtoken_mcp_server_factory`` is: ``make(**kwargs)``."""

    def __call__(self, **kwargs: Any) -> FakeMCPServer:
        """Start a fake MCP server (``FakeMCPServer`` keyword arguments)."""
        ...


class ProxyFactory(Protocol):
    """What ``freshtoken_proxy_factory`` is: ``make(**kwargs)``."""

    def __call__(self, **kwargs: Any) -> Proxy:
        """Start a proxy (``Proxy`` keyword arguments)."""
        ...


@dataclass(frozen=True)
class Credentials:
    """Everything a client that refreshes its own tokens needs to reach the fake MCP server
    directly (no proxy in between): what ``freshtoken_credentials`` is.

    The token pair is a grant of its own at ``token_endpoint`` (the proxy's is another), so a
    client may refresh and rotate it freely. ``expires_in`` is the lifetime the authorization
    server reported (``None`` when the marker says ``report_expires_in=False``); ``expires_at``
    is the same moment on ``freshtoken_clock``, which is the time the fakes judge expiry by.
    Secrets stay out of the repr: it shows fingerprints.
    """

    mcp_url: str
    """The fake MCP server's endpoint, to call with ``Authorization: Bearer <access_token>``."""
    token_endpoint: str
    client_id: str
    client_secret: str = field(repr=False)
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in: int | None
    expires_at: float | None
    scope: str | None
    resource: str
    """The RFC 8707 resource indicator the grant is bound to (the MCP server's URL)."""
    issuer: str
    """The authorization server's issuer (its RFC 8414 metadata lives under it)."""
    ca_path: Path | None = None
    """The PEM file of the CA the fakes' certificates chain to (``None`` without TLS)."""

    def __repr__(self) -> str:
        return (
            f"Credentials(mcp_url={self.mcp_url!r}, token_endpoint={self.token_endpoint!r}, "
            f"client_id={self.client_id!r}, access_token=<{fingerprint(self.access_token)}>, "
            f"refresh_token=<{fingerprint(self.refresh_token)}>, expires_in={self.expires_in!r}, "
            f"scope={self.scope!r}, ca_path={self.ca_path!r})"
        )
