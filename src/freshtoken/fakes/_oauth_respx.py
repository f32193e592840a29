"""Mount the fake OAuth authorization server's core on a respx router: httpx clients, no sockets."""

from __future__ import annotations

from collections.abc import Awaitable
from urllib.parse import urlsplit

import httpx
import respx

from freshtoken.fakes._oauth_core import OAuthCore
from freshtoken.fakes._oauth_models import CoreRequest, CoreResponse

__all__ = ["mount_respx"]


def mount_respx(router: respx.MockRouter, core: OAuthCore) -> respx.Route:
    """Route every request to ``core.issuer``'s scheme, host and port into ``core.handle``.

    Faults behave as over sockets: ``reset`` raises :class:`httpx.ReadError`, and ``delay`` waits
    on the core's clock, which needs an async client (a sync client cannot await the clock).
    Returns the route, so a test can count ``route.calls``.
    """
    issuer = urlsplit(core.issuer)
    port = issuer.port or (443 if issuer.scheme == "https" else 80)

    def side_effect(request: httpx.Request) -> httpx.Response | Awaitable[httpx.Response]:
        response = core.handle(
            CoreRequest(
                method=request.method,
                path=request.url.path,
                query=request.url.query.decode("ascii"),
                headers=dict(request.headers),
                body=request.content,
            )
        )
        if response.delay > 0:
            return _delayed(core, request, response)
        return _to_httpx(request, response)

    route: respx.Route = router.route(scheme=issuer.scheme, host=issuer.hostname, port=port)
    route.side_effect = side_effect
    return route


async def _delayed(
    core: OAuthCore, request: httpx.Request, response: CoreResponse
) -> httpx.Response:
    await core.clock.sleep(response.delay)
    return _to_httpx(request, response)


def _to_httpx(request: httpx.Request, response: CoreResponse) -> httpx.Response:
    if response.reset:
        raise httpx.ReadError("connection reset by the fake authorization server", request=request)
    return httpx.Response(
        response.status, headers=response.headers, content=response.body, request=request
    )
