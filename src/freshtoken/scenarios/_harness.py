"""One builder for the fakes, a seeded token source and the proxy, from one :class:`Setup`.

The scenario runner, the subjects, the Hypothesis state machine, the pytest fixtures and
``freshtoken fakes`` all wire the same pieces the same way; they do it here, so a new setting is
threaded through once.
"""

from __future__ import annotations

import contextlib
import functools
import ssl
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from freshtoken._clock import Clock, ManualClock
from freshtoken._setup import Setup
from freshtoken._timeline import Timeline
from freshtoken.fakes import (
    FakeAuthorizationServer,
    FakeCA,
    FakeMCPServer,
    FaultPlan,
    TokenPair,
    TokenPolicy,
)
from freshtoken.proxy import Proxy, RefreshTokenSource, tool_error_matcher

__all__ = ["DEFAULT_TARGET", "Harness", "default_client_ssl"]

DEFAULT_TARGET = "mcp"
"""The name the fake MCP server is registered under on the proxy."""
SEEDED_SCOPE = "mcp"
"""The scope of the seeded grant: what the fake MCP server advertises in ``scopes_supported``."""

_Lifecycle = TypeVar("_Lifecycle", bound="_Managed")


class _Managed(Protocol):
    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any: ...


@functools.cache
def default_client_ssl() -> ssl.SSLContext:
    """The client TLS context of a harness without TLS, shared by every harness in the process.

    Without TLS the fakes speak plain http, so no client ever verifies a certificate with it;
    httpx still wants a context, and ``verify=True`` would load the system's trust store for
    each client (tens of milliseconds). This one trusts no CA at all: were it ever used for
    https, verification would fail rather than pass.
    """
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class Harness:
    """The fake authorization server, the fake MCP server and freshtoken's proxy for one run.

    ``async with Harness(setup) as harness:`` starts, in order, a trustme CA (when
    ``setup.tls`` and no ``ca`` is given), the fake authorization server (its token policy from
    ``setup``), the fake MCP server validating against it (revision, response mode, auth-failure
    style from ``setup``; ``faults`` as its fault plan) and, unless ``proxy=False``, the proxy
    with target ``"mcp"`` in front of the MCP server, fed by a :class:`RefreshTokenSource` seeded
    with a freshly issued token pair (:attr:`seeded`). Every piece shares ``clock`` (a new
    :class:`~freshtoken.ManualClock` unless given) and ``timeline``. Leaving the block closes
    everything last-first, then re-raises the first error a fake server hit inside a handler
    (their ``check()``).

    ``proxy_options`` are extra :class:`Proxy` keyword arguments (``limits``, ``matcher``, …);
    a setup whose server reports a refused bearer as a tool error (``200-tool-error``) gives the
    proxy :data:`~freshtoken.proxy.tool_error_matcher` unless they say otherwise.
    With ``lazy=True`` entering starts nothing: call the ``start_*`` methods one piece at a time
    (what the pytest fixtures do); whatever they start closes with the harness.

    ``server_ssl`` and ``client_ssl`` reuse TLS contexts made from ``ca`` earlier (building one
    costs milliseconds; a test suite makes them once per session).
    """

    authorization_server: FakeAuthorizationServer
    """The first authorization server started."""
    mcp_server: FakeMCPServer
    """The first MCP server started."""
    proxy: Proxy
    """The first proxy started by :meth:`start_proxy`."""

    def __init__(
        self,
        setup: Setup | None = None,
        *,
        clock: Clock | None = None,
        timeline: Timeline | None = None,
        ca: FakeCA | None = None,
        faults: FaultPlan | None = None,
        proxy: bool = True,
        proxy_options: Mapping[str, Any] | None = None,
        lazy: bool = False,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.setup = setup if setup is not None else Setup()
        self.clock: Clock = clock if clock is not None else ManualClock()
        self.timeline = timeline if timeline is not None else Timeline(self.clock)
        self.faults = faults
        self.ca = ca
        self._with_proxy = proxy
        self._proxy_options = dict(proxy_options or {})
        self._lazy = lazy
        self._server_ssl = server_ssl
        self._client_ssl = client_ssl
        self._seeded: dict[int, tuple[TokenPair, float | None]] = {}
        self._stack = contextlib.AsyncExitStack()

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._stack.__aenter__()
        try:
            if self.setup.tls and self.ca is None:
                self.ca = self._stack.enter_context(FakeCA())
            if not self._lazy:
                await self.start_authorization_server()
                await self.start_mcp_server()
                if self._with_proxy:
                    await self.start_proxy()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    async def adopt(self, thing: _Lifecycle) -> _Lifecycle:
        """Start ``thing`` (an async context manager) now and close it with the harness, in
        last-first order with everything else. A fake server's ``check()`` runs after it closed."""
        if callable(getattr(thing, "check", None)):
            # Looked up at exit, not now: a test may swap ``check`` on a running server.
            self._stack.callback(lambda: thing.check())  # type: ignore[attr-defined]
        await self._stack.enter_async_context(thing)
        return thing

    # -- TLS -----------------------------------------------------------------------------------

    @property
    def server_ssl(self) -> ssl.SSLContext | None:
        """The fakes' TLS context (``None`` without TLS)."""
        if self._server_ssl is None and self.setup.tls and self.ca is not None:
            self._server_ssl = self.ca.server_ssl_context()
        return self._server_ssl

    @property
    def client_ssl(self) -> ssl.SSLContext | None:
        """A client context trusting the fakes' CA (``None`` without TLS)."""
        if self._client_ssl is None and self.setup.tls and self.ca is not None:
            self._client_ssl = self.ca.client_ssl_context()
        return self._client_ssl

    @property
    def verify(self) -> ssl.SSLContext:
        """What an httpx client passes as ``verify`` to reach the fakes: the fakes' CA with TLS,
        else :func:`default_client_ssl` (plain http needs no trust, and loading the system's
        trust store costs tens of milliseconds per client)."""
        context = self.client_ssl
        return context if context is not None else default_client_ssl()

    # -- what the setup decides ------------------------------------------------------------------

    def token_policy(self) -> TokenPolicy:
        """The fake authorization server's token policy for :attr:`setup`."""
        setup = self.setup
        return TokenPolicy(
            access_ttl=setup.access_ttl,
            report_expires_in=setup.report_expires_in,
            rotate_refresh_tokens=setup.rotate_refresh_tokens,
            reuse_detection=setup.reuse_detection,
            grace_period=setup.grace_period,
        )

    def authorization_server_options(self) -> dict[str, Any]:
        """``FakeAuthorizationServer`` keyword arguments: policy, clock, timeline, TLS."""
        return {
            "policy": self.token_policy(),
            "clock": self.clock,
            "timeline": self.timeline,
            "ssl_context": self.server_ssl,
        }

    def mcp_server_options(self) -> dict[str, Any]:
        """``FakeMCPServer`` keyword arguments: the setup's MCP settings, clock, timeline, TLS."""
        setup = self.setup
        return {
            "protocol_version": setup.protocol_version,
            "response_mode": setup.response_mode,
            "auth_failure_style": setup.auth_failure_style,
            "stream_auth": setup.stream_auth,
            "clock": self.clock,
            "timeline": self.timeline,
            "ssl_context": self.server_ssl,
        }

    def proxy_options(self) -> dict[str, Any]:
        """``Proxy`` keyword arguments: the shared timeline, trust in the fakes' CA, and the
        ``proxy_options`` given to the harness."""
        options: dict[str, Any] = {"timeline": self.timeline, "upstream_ssl": self.client_ssl}
        if self.setup.auth_failure_style == "200-tool-error":
            # This upstream reports a refused bearer as a tool error; reading tool-error text is
            # opt-in for the proxy (a replay re-runs the tool), so the setup opts in.
            options["matcher"] = tool_error_matcher
        return {**options, **self._proxy_options}

    # -- pieces ----------------------------------------------------------------------------------

    async def start_authorization_server(self, **options: Any) -> FakeAuthorizationServer:
        """Start a fake authorization server (``options`` override the setup's)."""
        defaults = self.authorization_server_options()
        if "core" in options:
            # A shared core brings its own policy, clock and timeline.
            defaults = {"ssl_context": defaults["ssl_context"]}
        server = await self.adopt(FakeAuthorizationServer(**{**defaults, **options}))
        if not hasattr(self, "authorization_server"):
            self.authorization_server = server
        return server

    async def start_mcp_server(
        self, authorization_server: FakeAuthorizationServer | None = None, **options: Any
    ) -> FakeMCPServer:
        """Start a fake MCP server validating bearers against ``authorization_server`` (default:
        :attr:`authorization_server`), with the harness's fault plan unless ``options`` say."""
        server = await self.adopt(
            FakeMCPServer(
                **{
                    "authorization_server": authorization_server or self.authorization_server,
                    "faults": self.faults,
                    **self.mcp_server_options(),
                    **options,
                }
            )
        )
        if not hasattr(self, "mcp_server"):
            self.mcp_server = server
        return server

    def seed(self, authorization_server: FakeAuthorizationServer | None = None) -> TokenPair:
        """The token pair issued for this run (once per authorization server): what a client
        starts with. Its expiry on the clock is :meth:`seeded_expires_at`."""
        server = authorization_server or self.authorization_server
        if id(server) not in self._seeded:
            # The grant a client would have got by logging in: the scope the MCP server
            # advertises and, once it runs, its RFC 8707 resource, so a client that asks for
            # them again on refresh is not refused.
            resource = self.mcp_server.url if hasattr(self, "mcp_server") else None
            pair = server.issue_tokens(scope=SEEDED_SCOPE, resource=resource)
            expires_at = None if pair.expires_in is None else self.clock.time() + pair.expires_in
            self._seeded[id(server)] = (pair, expires_at)
        return self._seeded[id(server)][0]

    @property
    def seeded(self) -> TokenPair:
        """The token pair :meth:`seed` issued at :attr:`authorization_server`."""
        return self.seed()

    def seeded_expires_at(
        self, authorization_server: FakeAuthorizationServer | None = None
    ) -> float | None:
        """When the seeded access token expires on the clock (``None``: not reported)."""
        server = authorization_server or self.authorization_server
        self.seed(server)
        return self._seeded[id(server)][1]

    def token_source(
        self, authorization_server: FakeAuthorizationServer | None = None
    ) -> RefreshTokenSource:
        """A refresh-token source at ``authorization_server`` starting from the seeded pair (so
        the first request spends no grant), on the harness's clock; closed with the harness."""
        server = authorization_server or self.authorization_server
        pair = self.seed(server)
        source = RefreshTokenSource(
            server.token_endpoint,
            server.client_id,
            server.client_secret,
            refresh_token=pair.refresh_token,
            access_token=pair.access_token,
            expires_at=self.seeded_expires_at(server),
            clock=self.clock,
            verify=self.verify,
            timeline=self.timeline,
            # Configured as a user would for an AS that documents its grace window.
            refresh_grace=self.setup.grace_period,
        )
        self._stack.push_async_callback(source.aclose)
        return source

    async def start_proxy(
        self,
        mcp_server: FakeMCPServer | None = None,
        *,
        authorization_server: FakeAuthorizationServer | None = None,
        target: str = DEFAULT_TARGET,
        proxy_class: type[Proxy] = Proxy,
        **options: Any,
    ) -> Proxy:
        """Start a proxy (``options`` override :meth:`proxy_options`; ``proxy_class`` a
        :class:`Proxy` subclass, such as a mutant) with ``mcp_server`` (default:
        :attr:`mcp_server`) registered as ``target``, fed by :meth:`token_source`."""
        source = self.token_source(authorization_server)
        proxy = await self.adopt(proxy_class(**{**self.proxy_options(), **options}))
        proxy.register(target, (mcp_server or self.mcp_server).url, source)
        if not hasattr(self, "proxy"):
            self.proxy = proxy
        return proxy

    async def start_bare_proxy(self, **options: Any) -> Proxy:
        """Start a proxy with no target (``options`` override :meth:`proxy_options`)."""
        return await self.adopt(Proxy(**{**self.proxy_options(), **options}))

    @property
    def proxy_url(self) -> str:
        """The client's URL for the fake MCP server through :attr:`proxy` (no credentials)."""
        return self.proxy.local_url(DEFAULT_TARGET)
