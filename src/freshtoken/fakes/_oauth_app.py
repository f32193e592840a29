"""The fake OAuth authorization server over real sockets: a thin aiohttp adapter over :class:`OAuthCore`."""

from __future__ import annotations

import ssl
from typing import Any

from aiohttp import web

from freshtoken._clock import Clock
from freshtoken._errors import ConfigError
from freshtoken._lifecycle import AsyncLifecycle
from freshtoken._serve import LoopbackSite, reset_connection
from freshtoken._timeline import Timeline
from freshtoken.fakes._oauth_core import OAuthCore
from freshtoken.fakes._oauth_faults import TokenFault
from freshtoken.fakes._oauth_models import (
    AUTHORIZE_PATH,
    INTROSPECTION_PATH,
    METADATA_PATH,
    REGISTRATION_PATH,
    REVOCATION_PATH,
    TOKEN_PATH,
    ClientRecord,
    CoreRequest,
    SeenTokenRequest,
    TokenInfo,
    TokenPair,
    TokenPolicy,
)

__all__ = ["FakeAuthorizationServer", "oauth_application"]


def oauth_application(core: OAuthCore) -> web.Application:
    """An aiohttp application that hands every request to ``core`` and honours delay and reset."""

    async def handler(request: web.Request) -> web.StreamResponse:
        core_request = CoreRequest(
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers=dict(request.headers),
            body=await request.read(),
        )
        response = core.handle(core_request)
        if response.delay > 0:
            await core.clock.sleep(response.delay)
        if response.reset:
            reset_connection(request)
            # The connection is gone; aiohttp drops whatever the handler returns.
            return web.Response(status=500)
        return web.Response(status=response.status, headers=response.headers, body=response.body)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


class FakeAuthorizationServer(AsyncLifecycle):
    """The fake OAuth authorization server on a loopback port, optionally over TLS.

    Pass a ``core`` to share its state (with a respx mount, say), or let the server build one
    from ``policy``, ``clock`` and ``timeline``. The core's issuer becomes this server's URL
    on start. Use as ``async with FakeAuthorizationServer() as server:``; :meth:`check` re-raises
    handler crashes in the test.
    """

    def __init__(
        self,
        *,
        core: OAuthCore | None = None,
        policy: TokenPolicy | None = None,
        clock: Clock | None = None,
        timeline: Timeline | None = None,
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if core is not None and (policy, clock, timeline) != (None, None, None):
            raise ConfigError("pass either core or policy/clock/timeline, not both")
        self.core = core or OAuthCore(clock=clock, timeline=timeline, policy=policy)
        self._site = LoopbackSite(
            oauth_application(self.core), host=host, port=port, ssl_context=ssl_context
        )
        self._started = False

    async def start(self) -> None:
        """Start listening; the core's issuer becomes :attr:`url`."""
        await self._site.start()
        self._started = True
        self.core.issuer = self._site.url

    async def stop(self) -> None:
        """Stop listening (idempotent)."""
        self._started = False
        await self._site.stop()

    def check(self) -> None:
        """Raise :class:`freshtoken.ServerSideError` if any request crashed a handler."""
        self.core.check()

    @property
    def url(self) -> str:
        """Base URL, no trailing slash."""
        if not self._started:
            raise RuntimeError("the fake authorization server is not running")
        return self._site.url

    @property
    def issuer(self) -> str:
        return self.core.issuer

    @property
    def metadata_url(self) -> str:
        return self.url + METADATA_PATH

    @property
    def authorization_endpoint(self) -> str:
        return self.url + AUTHORIZE_PATH

    @property
    def token_endpoint(self) -> str:
        return self.url + TOKEN_PATH

    @property
    def introspection_endpoint(self) -> str:
        return self.url + INTROSPECTION_PATH

    @property
    def revocation_endpoint(self) -> str:
        return self.url + REVOCATION_PATH

    @property
    def registration_endpoint(self) -> str:
        return self.url + REGISTRATION_PATH

    @property
    def control_url(self) -> str:
        """Base of the ``/_freshtoken/`` control endpoints (trailing slash included)."""
        return self.url + "/_freshtoken/"

    @property
    def client_id(self) -> str:
        return self.core.client_id

    @property
    def client_secret(self) -> str:
        return self.core.client_secret

    @property
    def clock(self) -> Clock:
        return self.core.clock

    @property
    def timeline(self) -> Timeline:
        return self.core.timeline

    @property
    def policy(self) -> TokenPolicy:
        return self.core.policy

    @property
    def token_requests(self) -> int:
        return self.core.token_requests

    def token_requests_seen(self, grant_type: str | None = None) -> list[SeenTokenRequest]:
        """See :meth:`OAuthCore.token_requests_seen`."""
        return self.core.token_requests_seen(grant_type)

    def authorizations_seen(self) -> int:
        """See :meth:`OAuthCore.authorizations_seen`."""
        return self.core.authorizations_seen()

    def issue_tokens(
        self, client_id: str | None = None, *, scope: str | None = None, resource: str | None = None
    ) -> TokenPair:
        """See :meth:`OAuthCore.issue_tokens`."""
        return self.core.issue_tokens(client_id, scope=scope, resource=resource)

    def register_client(self, **metadata: Any) -> ClientRecord:
        """See :meth:`OAuthCore.register_client`."""
        return self.core.register_client(**metadata)

    def validate_access_token(self, token: str) -> TokenInfo | None:
        """See :meth:`OAuthCore.validate_access_token`."""
        return self.core.validate_access_token(token)

    def rotate(self) -> None:
        """See :meth:`OAuthCore.rotate`."""
        self.core.rotate()

    def expire(self, token: str) -> None:
        """See :meth:`OAuthCore.expire`."""
        self.core.expire(token)

    def revoke_family(self, token: str) -> None:
        """See :meth:`OAuthCore.revoke_family`."""
        self.core.revoke_family(token)

    def fail_next(
        self,
        times: int = 1,
        *,
        status: int = 503,
        error: str | None = "temporarily_unavailable",
        delay: float = 0.0,
        reset: bool = False,
        garbage: bool = False,
        lose_response: bool = False,
        must_fire: bool = True,
    ) -> None:
        """See :meth:`OAuthCore.fail_next`."""
        self.core.fail_next(
            times,
            status=status,
            error=error,
            delay=delay,
            reset=reset,
            garbage=garbage,
            lose_response=lose_response,
            must_fire=must_fire,
        )

    def add_token_fault(self, fault: TokenFault, *, must_fire: bool = True) -> None:
        """See :meth:`OAuthCore.add_token_fault`."""
        self.core.add_token_fault(fault, must_fire=must_fire)

    def unfired_token_faults(self) -> list[TokenFault]:
        """See :meth:`OAuthCore.unfired_token_faults`."""
        return self.core.unfired_token_faults()
