"""The fixtures. Heavy imports happen inside them, so loading the plugin stays cheap.

Scopes: the certificate authority is session-scoped because minting a CA costs far more than a
test should pay; everything else is function-scoped because the fakes and the proxy start in a few
milliseconds and per-test state (clock, timeline, fault plan, tokens) must never leak between tests
(or between pytest-xdist workers, which share nothing anyway).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import pytest
import pytest_asyncio

from freshtoken._clock import ManualClock
from freshtoken._timeline import Timeline
from freshtoken.plugin._config import FreshtokenConfig
from freshtoken.plugin._hooks import config_key, timeline_key

if TYPE_CHECKING:
    import ssl

    from freshtoken.fakes import FakeAuthorizationServer, FakeCA, FakeMCPServer, FaultPlan
    from freshtoken.proxy import Proxy
    from freshtoken.scenarios._client import McpClient

__all__ = [
    "AuthServerFactory",
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
]


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


TARGET = "mcp"


@pytest.fixture(scope="session")
def freshtoken_ca() -> Iterator[FakeCA]:
    """A throwaway trustme certificate authority, shared by the whole session (minting one is slow).

    Only created when a test asks for TLS (``@pytest.mark.freshtoken(tls=True)``) or for this fixture.
    """
    from freshtoken.fakes import FakeCA

    with FakeCA() as ca:
        yield ca


@pytest.fixture
def freshtoken_config(request: pytest.FixtureRequest) -> FreshtokenConfig:
    """The settings the fakes are built with: defaults plus ``@pytest.mark.freshtoken(...)``.

    Override this fixture (e.g. ``return freshtoken_config.replace(tls=True)``) to change the
    defaults for a module or directory.
    """
    node: pytest.Item = request.node
    if config_key in node.stash:
        return node.stash[config_key]
    markers = [(m.args, m.kwargs) for m in node.iter_markers("freshtoken")]
    return FreshtokenConfig().apply_markers(markers)


@pytest.fixture
def freshtoken_clock() -> ManualClock:
    """The manual clock every fake (and the proxy's token source) reads: expiry without sleeping."""
    return ManualClock()


@pytest.fixture
def freshtoken_timeline(request: pytest.FixtureRequest, freshtoken_clock: ManualClock) -> Timeline:
    """The one timeline the fakes, the proxy and the client record into (tokens fingerprinted).

    It is attached to the report of a failing test as the "freshtoken timeline" section.
    """
    timeline = Timeline(clock=freshtoken_clock)
    request.node.stash[timeline_key] = timeline
    return timeline


@pytest.fixture
def freshtoken_faults() -> FaultPlan:
    """The fake MCP server's fault plan: add entries at any time, they apply to the next requests."""
    from freshtoken.fakes import FaultPlan

    return FaultPlan()


def _server_ssl(request: pytest.FixtureRequest, config: FreshtokenConfig) -> ssl.SSLContext | None:
    if not config.tls:
        return None
    ca: FakeCA = request.getfixturevalue("freshtoken_ca")
    return ca.server_ssl_context()


def _client_ssl(request: pytest.FixtureRequest, config: FreshtokenConfig) -> ssl.SSLContext | None:
    if not config.tls:
        return None
    ca: FakeCA = request.getfixturevalue("freshtoken_ca")
    return ca.client_ssl_context()


@pytest_asyncio.fixture
async def freshtoken_auth_server(
    request: pytest.FixtureRequest,
    freshtoken_config: FreshtokenConfig,
    freshtoken_clock: ManualClock,
    freshtoken_timeline: Timeline,
) -> AsyncIterator[FakeAuthorizationServer]:
    """A running fake OAuth authorization server configured by the marker.

    Its ``check()`` runs at teardown: an error inside one of its handlers fails the test.
    """
    from freshtoken.fakes import FakeAuthorizationServer

    server = FakeAuthorizationServer(
        policy=freshtoken_config.token_policy(),
        clock=freshtoken_clock,
        timeline=freshtoken_timeline,
        ssl_context=_server_ssl(request, freshtoken_config),
    )
    async with server:
        yield server
    server.check()


def _mcp_server_settings(
    config: FreshtokenConfig,
    clock: ManualClock,
    timeline: Timeline,
    ssl_context: ssl.SSLContext | None,
) -> dict[str, Any]:
    """The ``FakeMCPServer`` arguments the marker, the shared clock and timeline decide."""
    return {
        "protocol_version": config.protocol_version,
        "response_mode": config.response_mode,
        "auth_failure_style": config.auth_failure_style,
        "stream_auth": config.stream_auth,
        "clock": clock,
        "timeline": timeline,
        "ssl_context": ssl_context,
    }


@pytest_asyncio.fixture
async def freshtoken_mcp_server(
    request: pytest.FixtureRequest,
    freshtoken_config: FreshtokenConfig,
    freshtoken_clock: ManualClock,
    freshtoken_timeline: Timeline,
    freshtoken_faults: FaultPlan,
    freshtoken_auth_server: FakeAuthorizationServer,
) -> AsyncIterator[FakeMCPServer]:
    """A running fake MCP server that validates bearers against ``freshtoken_auth_server``.

    It applies ``freshtoken_faults``; its ``check()`` runs at teardown.
    """
    from freshtoken.fakes import FakeMCPServer

    server = FakeMCPServer(
        authorization_server=freshtoken_auth_server,
        faults=freshtoken_faults,
        **_mcp_server_settings(
            freshtoken_config,
            freshtoken_clock,
            freshtoken_timeline,
            _server_ssl(request, freshtoken_config),
        ),
    )
    async with server:
        yield server
    server.check()


@pytest_asyncio.fixture
async def freshtoken_proxy(
    request: pytest.FixtureRequest,
    freshtoken_config: FreshtokenConfig,
    freshtoken_clock: ManualClock,
    freshtoken_timeline: Timeline,
    freshtoken_auth_server: FakeAuthorizationServer,
    freshtoken_mcp_server: FakeMCPServer,
) -> AsyncIterator[Proxy]:
    """freshtoken's proxy with target ``"mcp"`` wired to both fakes.

    The target's token source holds a refresh token freshly issued by ``freshtoken_auth_server``
    and refreshes it at the token endpoint, on ``freshtoken_clock``.
    """
    from freshtoken.proxy import Proxy, RefreshTokenSource

    ca_path = request.getfixturevalue("freshtoken_ca").ca_path if freshtoken_config.tls else None
    seeded = freshtoken_auth_server.issue_tokens()
    source = RefreshTokenSource(
        freshtoken_auth_server.token_endpoint,
        freshtoken_auth_server.client_id,
        freshtoken_auth_server.client_secret,
        refresh_token=seeded.refresh_token,
        access_token=seeded.access_token,
        expires_at=(
            None if seeded.expires_in is None else freshtoken_clock.time() + seeded.expires_in
        ),
        clock=freshtoken_clock,
        verify=ca_path if ca_path is not None else True,
        timeline=freshtoken_timeline,
    )
    try:
        async with Proxy(
            timeline=freshtoken_timeline, upstream_ssl=_client_ssl(request, freshtoken_config)
        ) as proxy:
            proxy.register(TARGET, freshtoken_mcp_server.url, source)
            yield proxy
    finally:
        await source.aclose()


@pytest.fixture
def freshtoken_mcp_url(freshtoken_proxy: Proxy) -> str:
    """The proxied local URL of the fake MCP server: give it to the client under test, no auth."""
    return freshtoken_proxy.local_url(TARGET)


@pytest_asyncio.fixture
async def freshtoken_client(
    freshtoken_config: FreshtokenConfig,
    freshtoken_timeline: Timeline,
    freshtoken_mcp_url: str,
) -> AsyncIterator[McpClient]:
    """An initialized built-in MCP client talking to ``freshtoken_mcp_url`` (through the proxy).

    ``await freshtoken_client.call("echo", {"text": "hi"})`` returns a ``CallOutcome``.
    """
    from freshtoken.scenarios._client import McpClient

    async with McpClient(
        freshtoken_mcp_url,
        timeline=freshtoken_timeline,
        protocol_version=freshtoken_config.protocol_version,
    ) as client:
        outcome = await client.initialize()
        if outcome.status != 200:
            pytest.fail(f"freshtoken_client could not initialize: {outcome}", pytrace=False)
        yield client


@pytest_asyncio.fixture
async def _freshtoken_created() -> AsyncIterator[contextlib.AsyncExitStack]:
    # One stack for every factory, so servers close last-created first across factories too.
    async with contextlib.AsyncExitStack() as stack:
        yield stack


async def _adopt(stack: contextlib.AsyncExitStack, server: Any) -> Any:
    stack.callback(server.check)
    return await stack.enter_async_context(server)


@pytest.fixture
def freshtoken_auth_server_factory(
    request: pytest.FixtureRequest,
    freshtoken_config: FreshtokenConfig,
    freshtoken_clock: ManualClock,
    freshtoken_timeline: Timeline,
    _freshtoken_created: contextlib.AsyncExitStack,
) -> AuthServerFactory:
    """``await make(**kwargs)`` starts another fake authorization server.

    Keyword arguments go to ``FakeAuthorizationServer``; unset ones default to the marker's policy
    and TLS, the shared clock and the shared timeline. Everything made is closed (and checked)
    at teardown, last created first.
    """
    from freshtoken.fakes import FakeAuthorizationServer

    ssl_context = _server_ssl(request, freshtoken_config)

    async def make(**kwargs: Any) -> FakeAuthorizationServer:
        if "core" not in kwargs:
            kwargs.setdefault("policy", freshtoken_config.token_policy())
            kwargs.setdefault("clock", freshtoken_clock)
            kwargs.setdefault("timeline", freshtoken_timeline)
        kwargs.setdefault("ssl_context", ssl_context)
        server: FakeAuthorizationServer = await _adopt(
            _freshtoken_created, FakeAuthorizationServer(**kwargs)
        )
        return server

    return make


@pytest.fixture
def freshtoken_mcp_server_factory(
    request: pytest.FixtureRequest,
    freshtoken_config: FreshtokenConfig,
    freshtoken_clock: ManualClock,
    freshtoken_timeline: Timeline,
    _freshtoken_created: contextlib.AsyncExitStack,
) -> MCPServerFactory:
    """``await make(authorization_server=..., **kwargs)`` starts another fake MCP server.

    Keyword arguments go to ``FakeMCPServer`` (without ``authorization_server`` auth is off);
    unset ones default to the marker's settings, the shared clock and the shared timeline.
    Each server gets its own fault plan (``server.faults``). Closed and checked at teardown,
    last created first.
    """
    from freshtoken.fakes import FakeMCPServer

    ssl_context = _server_ssl(request, freshtoken_config)

    defaults = _mcp_server_settings(
        freshtoken_config, freshtoken_clock, freshtoken_timeline, ssl_context
    )

    async def make(**kwargs: Any) -> FakeMCPServer:
        server: FakeMCPServer = await _adopt(
            _freshtoken_created, FakeMCPServer(**{**defaults, **kwargs})
        )
        return server

    return make


@pytest.fixture
def freshtoken_proxy_factory(
    request: pytest.FixtureRequest,
    freshtoken_config: FreshtokenConfig,
    freshtoken_timeline: Timeline,
    _freshtoken_created: contextlib.AsyncExitStack,
) -> ProxyFactory:
    """``await make(**kwargs)`` starts another proxy (register targets on it yourself).

    Keyword arguments go to ``Proxy``; unset ones default to the shared timeline and, with TLS,
    trust in the session CA. Closed at teardown, last created first.
    """
    from freshtoken.proxy import Proxy

    upstream_ssl = _client_ssl(request, freshtoken_config)

    async def make(**kwargs: Any) -> Proxy:
        kwargs.setdefault("timeline", freshtoken_timeline)
        kwargs.setdefault("upstream_ssl", upstream_ssl)
        proxy: Proxy = await _freshtoken_created.enter_async_context(Proxy(**kwargs))
        return proxy

    return make
