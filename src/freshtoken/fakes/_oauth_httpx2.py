"""The fake OAuth authorization server's core as an ``httpx2`` transport: no sockets.

The official MCP Python SDK (``mcp`` 2.x) talks HTTP through ``httpx2``, a fork of httpx that
respx cannot intercept. This is the httpx2 counterpart of :func:`~freshtoken.fakes.mount_respx`:
mount it on the client the SDK's OAuth code uses, and its token, metadata, registration and
revocation requests go straight into :meth:`OAuthCore.handle`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from freshtoken.fakes._oauth_core import OAuthCore
from freshtoken.fakes._oauth_respx import core_handler

if TYPE_CHECKING:
    import httpx2

__all__ = ["httpx2_transport"]


def httpx2_transport(core: OAuthCore) -> httpx2.MockTransport:
    """A transport (for ``httpx2.AsyncClient`` or ``httpx2.Client``) answering every request
    from ``core``.

    Mount it for the authorization server's origin only, so other requests still go out::

        transport = httpx2_transport(core)
        client = httpx2.AsyncClient(mounts={core.issuer: transport})

    ``core.issuer`` names the origin the metadata advertises (``OAuthCore(issuer=...)``; for a
    running :class:`FakeAuthorizationServer` it is its URL). Faults behave as over sockets:
    ``reset`` and ``lose_response`` raise :class:`httpx2.ReadError`; ``delay`` waits on the
    core's clock, so it needs the async client.
    """
    import httpx2

    # One handler for both clients: MockTransport awaits what an async client gets back.
    return httpx2.MockTransport(core_handler(core, httpx2))
