"""The fixtures, registered by the plugin when the harness extra is installed.

The fakes and the proxy run on one event loop in a background thread, started once per session
(per pytest-xdist worker), as pytest-httpserver runs its server. Every fixture is synchronous:
it starts its piece on that loop and hands the test a thread-safe handle (see ``_remote``). So
the fixtures work the same from a sync test, from pytest-asyncio in either mode and any loop
scope, and from anyio on asyncio or trio: no fixture is bound to the test's event loop.

Every piece of one test comes from one :class:`freshtoken.scenarios.Harness`
(``_freshtoken_harness``), which closes everything last-first at teardown and then re-raises any
error a fake server hit inside a handler; then faults the test added but never fired fail it.
The fakes and the scenario engine are imported inside the fixtures, so a test run that uses none
of them does not pay for loading them.

Scopes: the CA, its TLS contexts and the loop are session-scoped (minting a CA or an SSL context
costs more than a test should pay); everything else is function-scoped because the fakes and
the proxy start in a few milliseconds and per-test state (clock, timeline, fault plan, tokens)
must never leak between tests (or between pytest-xdist workers, which share nothing anyway).
"""

from __future__ import annotations

import ssl
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar

import pytest

from freshtoken._clock import ManualClock
from freshtoken._threadloop import LoopThread
from freshtoken._timeline import Timeline
from freshtoken.plugin._config import FreshtokenConfig
from freshtoken.plugin._hooks import call_passed_key, config_key, timeline_key
from freshtoken.plugin._remote import remote, target_of
from freshtoken.plugin._types import (
    AuthServerFactory,
    Credentials,
    MCPServerFactory,
    ProxyFactory,
)

if TYPE_CHECKING:
    from freshtoken.fakes import FakeAuthorizationServer, FakeCA, FakeMCPServer, FaultPlan
    from freshtoken.plugin._faults import FixtureFaultPlan
    from freshtoken.proxy import Proxy
    from freshtoken.scenarios import CallOutcome, Harness, McpClient

__all__ = [
    "CREDENTIALS_SCOPE",
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
]

T = TypeVar("T")

SETUP_TIMEOUT: Final = 30.0
"""Real seconds starting or stopping one test's fakes may take (a bound, not a pace)."""
CREDENTIALS_SCOPE: Final = "mcp"
"""The scope ``freshtoken_credentials`` are granted: the one the fake MCP server advertises."""


@dataclass
class _Run:
    """One test's harness on the session's background loop."""

    harness: Harness
    loop: LoopThread
    config: FreshtokenConfig
    plans: list[FaultPlan] = field(default_factory=list)
    auth_servers: list[FakeAuthorizationServer] = field(default_factory=list)

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run(coroutine, timeout=SETUP_TIMEOUT)

    def handle(self, thing: T) -> T:
        return remote(thing, self.loop)


@pytest.fixture(scope="session")
def freshtoken_ca() -> Iterator[FakeCA]:
    """A throwaway trustme certificate authority, shared by the whole session (minting one is slow).

    Only created when a test asks for TLS (``@pytest.mark.freshtoken(tls=True)``) or for this fixture.
    """
    from freshtoken.fakes import FakeCA

    with FakeCA() as ca:
        yield ca


@pytest.fixture(scope="session")
def _freshtoken_tls(freshtoken_ca: FakeCA) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    # Server and client contexts for the session CA, built once (each costs milliseconds).
    return freshtoken_ca.server_ssl_context(), freshtoken_ca.client_ssl_context()


@pytest.fixture(scope="session")
def _freshtoken_loop() -> Iterator[LoopThread]:
    # The fakes' and proxies' event loop: one background thread per session (per xdist worker).
    # The harness and the built-in client are imported here, on first use, so no test's
    # timeline counts that time (the package loads the rest of its names lazily).
    from freshtoken.scenarios import Harness, McpClient  # noqa: F401

    thread = LoopThread("freshtoken-fixtures").start()
    yield thread
    thread.stop()


@pytest.fixture
def freshtoken_config(request: pytest.FixtureRequest) -> FreshtokenConfig:
    """The settings the fakes are built with: defaults plus ``@pytest.mark.freshtoken(...)``.

    Override this fixture (e.g. ``return freshtoken_config.replace(tls=True)``) to change the
    defaults for a module or directory; a test's markers are applied again on top of what the
    override returns, so a marker beats the directory's settings.
    """
    node: pytest.Item = request.node
    if config_key in node.stash:
        return node.stash[config_key]
    return FreshtokenConfig().apply_markers(_markers(node))


def _markers(node: pytest.Item) -> list[tuple[tuple[Any, ...], Mapping[str, Any]]]:
    return [(mark.args, mark.kwargs) for mark in node.iter_markers("freshtoken")]


@pytest.fixture
def freshtoken_clock() -> ManualClock:
    """The manual clock every fake (and the proxy's token source) reads: expiry without sleeping.

    Thread-safe: ``advance()`` from the test wakes what sleeps on it on the fixtures' loop.
    """
    return ManualClock()


@pytest.fixture
def freshtoken_timeline(
    request: pytest.FixtureRequest, freshtoken_clock: ManualClock, _freshtoken_loop: LoopThread
) -> Timeline:
    """The one timeline the fakes, the proxy and the client record into (tokens fingerprinted).

    It is attached to the report of a failing test as the "freshtoken timeline" section.
    """
    timeline = Timeline(clock=freshtoken_clock)
    request.node.stash[timeline_key] = timeline
    return timeline


@pytest.fixture
def freshtoken_faults() -> FixtureFaultPlan:
    """The fake MCP server's fault plan: add entries at any time, they apply to the next requests.

    A fault that never fired fails the test at teardown; ``add(fault, must_fire=False)`` exempts
    one, ``@pytest.mark.freshtoken(assert_all_faults_fired=False)`` a whole test.
    """
    from freshtoken.plugin._faults import FixtureFaultPlan

    return FixtureFaultPlan()


@pytest.fixture
def _freshtoken_harness(
    request: pytest.FixtureRequest,
    freshtoken_config: FreshtokenConfig,
    freshtoken_clock: ManualClock,
    freshtoken_timeline: Timeline,
    freshtoken_faults: FixtureFaultPlan,
    _freshtoken_loop: LoopThread,
) -> Iterator[_Run]:
    # One harness per test builds every piece the test asks for, and closes them last-first.
    from freshtoken.scenarios import Harness

    node: pytest.Item = request.node
    # Markers last: they beat an overriding freshtoken_config (a directory's defaults).
    config = freshtoken_config.apply_markers(_markers(node))
    server_ssl = client_ssl = None
    ca = None
    if config.tls:
        ca = request.getfixturevalue("freshtoken_ca")
        server_ssl, client_ssl = request.getfixturevalue("_freshtoken_tls")
    harness = Harness(
        config,
        clock=freshtoken_clock,
        timeline=freshtoken_timeline,
        ca=ca,
        faults=freshtoken_faults,
        lazy=True,
        server_ssl=server_ssl,
        client_ssl=client_ssl,
    )
    run = _Run(harness, _freshtoken_loop, config, plans=[freshtoken_faults])
    run.call(harness.__aenter__())
    yield run
    run.call(harness.__aexit__(None, None, None))
    if config.assert_all_faults_fired and node.stash.get(call_passed_key, False):
        from freshtoken.plugin._faults import unfired, unfired_message

        never = [state for plan in run.plans for state in unfired(plan)]
        token_faults = [f for server in run.auth_servers for f in server.unfired_token_faults()]
        if never or token_faults:
            pytest.fail(unfired_message(never, token_faults), pytrace=False)


@pytest.fixture
def freshtoken_auth_server(_freshtoken_harness: _Run) -> FakeAuthorizationServer:
    """A running fake OAuth authorization server configured by the marker.

    A thread-safe handle: its methods run on the fixtures' loop (``rotate()``, ``expire()``,
    ``fail_next()``…). Its ``check()`` runs at teardown: an error inside one of its handlers
    fails the test.
    """
    run = _freshtoken_harness
    server = run.call(run.harness.start_authorization_server())
    run.auth_servers.append(server)
    return run.handle(server)


@pytest.fixture
def freshtoken_mcp_server(
    _freshtoken_harness: _Run, freshtoken_auth_server: FakeAuthorizationServer
) -> FakeMCPServer:
    """A running fake MCP server that validates bearers against ``freshtoken_auth_server``.

    It applies ``freshtoken_faults``; its ``check()`` runs at teardown. A thread-safe handle, like
    ``freshtoken_auth_server``.
    """
    run = _freshtoken_harness
    return run.handle(run.call(run.harness.start_mcp_server(target_of(freshtoken_auth_server))))


@pytest.fixture
def freshtoken_proxy(
    _freshtoken_harness: _Run,
    freshtoken_auth_server: FakeAuthorizationServer,
    freshtoken_mcp_server: FakeMCPServer,
) -> Proxy:
    """freshtoken's proxy with target ``"mcp"`` wired to both fakes (a thread-safe handle).

    The target's token source starts from a token pair freshly issued by
    ``freshtoken_auth_server`` and refreshes at its token endpoint, on ``freshtoken_clock``.
    """
    run = _freshtoken_harness
    proxy = run.harness.start_proxy(
        target_of(freshtoken_mcp_server), authorization_server=target_of(freshtoken_auth_server)
    )
    return run.handle(run.call(proxy))


@pytest.fixture
def freshtoken_mcp_url(freshtoken_proxy: Proxy) -> str:
    """The proxied local URL of the fake MCP server: give it to the client under test, no auth.

    The proxy holds the token: use this to test a client *through* the proxy. A client that
    refreshes its own tokens is tested with ``freshtoken_credentials`` instead.
    """
    from freshtoken.scenarios import DEFAULT_TARGET

    # Read off the proxy itself: the URL is fixed once the target is registered, so there is
    # no need for a trip to the fixtures' loop.
    return target_of(freshtoken_proxy).local_url(DEFAULT_TARGET)


@pytest.fixture
def freshtoken_credentials(
    _freshtoken_harness: _Run,
    freshtoken_auth_server: FakeAuthorizationServer,
    freshtoken_mcp_server: FakeMCPServer,
    freshtoken_clock: ManualClock,
) -> Credentials:
    """Direct credentials for the fake MCP server, for a client that refreshes its own tokens.

    Token endpoint, client id and secret, a fresh access and refresh token (a grant of their
    own), their expiry, scope, resource and, with TLS, the CA's PEM file. No proxy is involved:
    a client that bakes its bearer fails here after a rotation, as it would in production.
    """
    run = _freshtoken_harness
    auth = target_of(freshtoken_auth_server)
    mcp_url = freshtoken_mcp_server.url
    pair = auth.issue_tokens(scope=CREDENTIALS_SCOPE, resource=mcp_url)
    expires_at = None if pair.expires_in is None else freshtoken_clock.time() + pair.expires_in
    ca = run.harness.ca
    return Credentials(
        mcp_url=mcp_url,
        token_endpoint=auth.token_endpoint,
        client_id=auth.client_id,
        client_secret=auth.client_secret,
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
        expires_at=expires_at,
        scope=pair.scope,
        resource=mcp_url,
        issuer=auth.issuer,
        ca_path=ca.ca_path if ca is not None and run.config.tls else None,
    )


@pytest.fixture
def freshtoken_client(_freshtoken_harness: _Run, freshtoken_mcp_url: str) -> McpClient:
    """An initialized built-in MCP client talking to ``freshtoken_mcp_url`` (through the proxy).

    ``await freshtoken_client.call("echo", {"text": "hi"})`` returns a ``CallOutcome``. It runs
    on the test's own event loop (asyncio or trio, any scope): it keeps no connection open
    between calls, so it is bound to no loop and needs no async teardown.
    """
    import httpx

    from freshtoken.scenarios import McpClient

    run = _freshtoken_harness
    client = McpClient(
        freshtoken_mcp_url,
        timeline=run.harness.timeline,
        protocol_version=run.config.protocol_version,
        verify=run.harness.verify,
        limits=httpx.Limits(max_keepalive_connections=0),
    )
    outcome = run.call(_handshake(client, run.harness.verify))
    if outcome.status != 200:
        pytest.fail(f"freshtoken_client could not initialize: {outcome}", pytrace=False)
    return client


async def _handshake(client: McpClient, verify: ssl.SSLContext) -> CallOutcome:
    # On the fixtures' loop, which is always asyncio, the handshake goes over aiohttp through
    # httpx-aiohttp's transport: about 30 % faster than httpx's own (the benchmarks measure
    # both). The client's own pool is left unused, so its first request, and its locks,
    # belong to the test's loop and backend.
    import httpx
    from httpx_aiohttp import AiohttpTransport

    transport = AiohttpTransport(verify=verify, trust_env=False)
    async with httpx.AsyncClient(transport=transport, timeout=client.http_timeout) as http:
        with client.sending_through(http):
            return await client.initialize()


def _unwrapped(kwargs: dict[str, Any]) -> dict[str, Any]:
    # A handle passed back in (authorization_server=freshtoken_auth_server) is its object again.
    return {name: target_of(value) for name, value in kwargs.items()}


@pytest.fixture
def freshtoken_auth_server_factory(_freshtoken_harness: _Run) -> AuthServerFactory:
    """``make(**kwargs)`` starts another fake authorization server and returns its handle.

    Keyword arguments go to ``FakeAuthorizationServer``; unset ones default to the marker's policy
    and TLS, the shared clock and the shared timeline. Everything made is closed (and checked)
    at teardown, last created first.
    """
    run = _freshtoken_harness

    def make(**kwargs: Any) -> FakeAuthorizationServer:
        server = run.call(run.harness.start_authorization_server(**_unwrapped(kwargs)))
        run.auth_servers.append(server)
        return run.handle(server)

    return make


@pytest.fixture
def freshtoken_mcp_server_factory(_freshtoken_harness: _Run) -> MCPServerFactory:
    """``make(authorization_server=..., **kwargs)`` starts another fake MCP server.

    Keyword arguments go to ``FakeMCPServer`` (without ``authorization_server`` auth is off);
    unset ones default to the marker's settings, the shared clock and the shared timeline.
    Each server gets its own fault plan (``server.faults``, checked for unfired faults like
    ``freshtoken_faults``). Closed and checked at teardown, last created first.
    """
    from freshtoken.fakes import FakeMCPServer
    from freshtoken.plugin._faults import FixtureFaultPlan

    run = _freshtoken_harness

    async def start(options: dict[str, Any]) -> FakeMCPServer:
        return await run.harness.adopt(FakeMCPServer(**options))

    def make(**kwargs: Any) -> FakeMCPServer:
        options = {
            **run.harness.mcp_server_options(),
            "faults": FixtureFaultPlan(),
            **_unwrapped(kwargs),
        }
        server = run.call(start(options))
        run.plans.append(server.faults)
        return run.handle(server)

    return make


@pytest.fixture
def freshtoken_proxy_factory(_freshtoken_harness: _Run) -> ProxyFactory:
    """``make(**kwargs)`` starts another proxy (register targets on it yourself).

    Keyword arguments go to ``Proxy``; unset ones default to the shared timeline and, with TLS,
    trust in the session CA. Closed at teardown, last created first.
    """
    run = _freshtoken_harness

    def make(**kwargs: Any) -> Proxy:
        return run.handle(run.call(run.harness.start_bare_proxy(**_unwrapped(kwargs))))

    return make
