"""The fixtures, registered by the plugin when the harness extra is installed.

Every fixture builds its piece through one :class:`freshtoken.scenarios.Harness` per test
(``_freshtoken_harness``), which closes everything last-first at teardown and then re-raises any
error a fake server hit inside a handler. The fakes and the scenario engine are imported inside
the fixtures, so a test run that uses none of them does not pay for loading them.

Scopes: the certificate authority is session-scoped because minting a CA costs far more than a
test should pay; everything else is function-scoped because the fakes and the proxy start in a few
milliseconds and per-test state (clock, timeline, fault plan, tokens) must never leak between tests
(or between pytest-xdist workers, which share nothing anyway).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from freshtoken._clock import ManualClock
from freshtoken._timeline import Timeline
from freshtoken.plugin._config import FreshtokenConfig
from freshtoken.plugin._hooks import config_key, timeline_key
from freshtoken.plugin._types import AuthServerFactory, MCPServerFactory, ProxyFactory

if TYPE_CHECKING:
    from freshtoken.fakes import FakeAuthorizationServer, FakeCA, FakeMCPServer, FaultPlan
    from freshtoken.proxy import Proxy
    from freshtoken.scenarios import Harness, McpClient

__all__ = [
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


@pytest_asyncio.fixture
async def _freshtoken_harness(
    request: pytest.FixtureRequest,
    freshtoken_config: FreshtokenConfig,
    freshtoken_clock: ManualClock,
    freshtoken_timeline: Timeline,
    freshtoken_faults: FaultPlan,
) -> AsyncIterator[Harness]:
    # One harness per test builds every piece the test asks for, and closes them last-first.
    from freshtoken.scenarios import Harness

    ca = request.getfixturevalue("freshtoken_ca") if freshtoken_config.tls else None
    async with Harness(
        freshtoken_config,
        clock=freshtoken_clock,
        timeline=freshtoken_timeline,
        ca=ca,
        faults=freshtoken_faults,
        lazy=True,
    ) as harness:
        yield harness


@pytest_asyncio.fixture
async def freshtoken_auth_server(_freshtoken_harness: Harness) -> FakeAuthorizationServer:
    """A running fake OAuth authorization server configured by the marker.

    Its ``check()`` runs at teardown: an error inside one of its handlers fails the test.
    """
    return await _freshtoken_harness.start_authorization_server()


@pytest_asyncio.fixture
async def freshtoken_mcp_server(
    _freshtoken_harness: Harness, freshtoken_auth_server: FakeAuthorizationServer
) -> FakeMCPServer:
    """A running fake MCP server that validates bearers against ``freshtoken_auth_server``.

    It applies ``freshtoken_faults``; its ``check()`` runs at teardown.
    """
    return await _freshtoken_harness.start_mcp_server(freshtoken_auth_server)


@pytest_asyncio.fixture
async def freshtoken_proxy(
    _freshtoken_harness: Harness,
    freshtoken_auth_server: FakeAuthorizationServer,
    freshtoken_mcp_server: FakeMCPServer,
) -> Proxy:
    """freshtoken's proxy with target ``"mcp"`` wired to both fakes.

    The target's token source starts from a token pair freshly issued by
    ``freshtoken_auth_server`` and refreshes at its token endpoint, on ``freshtoken_clock``.
    """
    return await _freshtoken_harness.start_proxy(
        freshtoken_mcp_server, authorization_server=freshtoken_auth_server
    )


@pytest.fixture
def freshtoken_mcp_url(freshtoken_proxy: Proxy) -> str:
    """The proxied local URL of the fake MCP server: give it to the client under test, no auth."""
    from freshtoken.scenarios import DEFAULT_TARGET

    return freshtoken_proxy.local_url(DEFAULT_TARGET)


@pytest_asyncio.fixture
async def freshtoken_client(
    freshtoken_config: FreshtokenConfig,
    freshtoken_timeline: Timeline,
    freshtoken_mcp_url: str,
) -> AsyncIterator[McpClient]:
    """An initialized built-in MCP client talking to ``freshtoken_mcp_url`` (through the proxy).

    ``await freshtoken_client.call("echo", {"text": "hi"})`` returns a ``CallOutcome``.
    """
    from freshtoken.scenarios import McpClient

    async with McpClient(
        freshtoken_mcp_url,
        timeline=freshtoken_timeline,
        protocol_version=freshtoken_config.protocol_version,
    ) as client:
        outcome = await client.initialize()
        if outcome.status != 200:
            pytest.fail(f"freshtoken_client could not initialize: {outcome}", pytrace=False)
        yield client


@pytest.fixture
def freshtoken_auth_server_factory(_freshtoken_harness: Harness) -> AuthServerFactory:
    """``await make(**kwargs)`` starts another fake authorization server.

    Keyword arguments go to ``FakeAuthorizationServer``; unset ones default to the marker's policy
    and TLS, the shared clock and the shared timeline. Everything made is closed (and checked)
    at teardown, last created first.
    """

    async def make(**kwargs: Any) -> FakeAuthorizationServer:
        return await _freshtoken_harness.start_authorization_server(**kwargs)

    return make


@pytest.fixture
def freshtoken_mcp_server_factory(_freshtoken_harness: Harness) -> MCPServerFactory:
    """``await make(authorization_server=..., **kwargs)`` starts another fake MCP server.

    Keyword arguments go to ``FakeMCPServer`` (without ``authorization_server`` auth is off);
    unset ones default to the marker's settings, the shared clock and the shared timeline.
    Each server gets its own fault plan (``server.faults``). Closed and checked at teardown,
    last created first.
    """
    from freshtoken.fakes import FakeMCPServer

    async def make(**kwargs: Any) -> FakeMCPServer:
        server = FakeMCPServer(**{**_freshtoken_harness.mcp_server_options(), **kwargs})
        return await _freshtoken_harness.adopt(server)

    return make


@pytest.fixture
def freshtoken_proxy_factory(_freshtoken_harness: Harness) -> ProxyFactory:
    """``await make(**kwargs)`` starts another proxy (register targets on it yourself).

    Keyword arguments go to ``Proxy``; unset ones default to the shared timeline and, with TLS,
    trust in the session CA. Closed at teardown, last created first.
    """

    async def make(**kwargs: Any) -> Proxy:
        return await _freshtoken_harness.start_bare_proxy(**kwargs)

    return make
