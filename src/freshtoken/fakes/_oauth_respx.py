"""Mount the fake OAuth authorization server's core on a respx router: httpx clients, no sockets."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import httpx
import respx

from freshtoken.fakes._oauth_core import OAuthCore
from freshtoken.fakes._oauth_models import CoreRequest, CoreResponse

__all__ = ["core_handler", "mount_respx"]


def mount_respx(router: respx.MockRouter, core: OAuthCore) -> respx.Route:
    """Route every request to ``core.issuer``'s scheme, host and port into ``core.handle``.

    Faults behave as over sockets: ``reset`` raises :class:`httpx.ReadError`, and ``delay`` waits
    on the core's clock, which needs an async client (a sync client cannot await the clock).
    Returns the route, so a test can count ``route.calls``.
    """
    issuer = urlsplit(core.issuer)
    port = issuer.port or (443 if issuer.scheme == "https" else 80)
    route: respx.Route = router.route(scheme=issuer.scheme, host=issuer.hostname, port=port)
    route.side_effect = core_handler(core, httpx)
    return route


def core_handler(core: OAuthCore, http: ModuleType) -> Callable[[Any], Any]:
    """A request handler answering from ``core``, for ``http`` (the ``httpx`` module, or
    ``httpx2``, which has the same request, response and error types): a response, or an
    awaitable one when a fault delays it on the core's clock; ``reset`` and ``lose_response``
    raise ``http.ReadError``."""

    def to_response(request: Any, response: CoreResponse) -> Any:
        if response.reset:
            raise http.ReadError(
                "connection reset by the fake authorization server", request=request
            )
        return http.Response(
            response.status, headers=response.headers, content=response.body, request=request
        )

    async def delayed(request: Any, response: CoreResponse) -> Any:
        await core.clock.sleep(response.delay)
        return to_response(request, response)

    def handle(request: Any) -> Any:
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
            return delayed(request, response)
        return to_response(request, response)

    return handle
