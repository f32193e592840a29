"""The upstream hop's HTTP client: aiohttp's, configured as a proxy needs it.

One :class:`aiohttp.ClientSession` serves every target: a per-origin connection limit, idle
keep-alive connections expired before common servers expire them, a DNS cache, happy eyeballs,
TCP keep-alive probes (a dead peer ends even an idle SSE stream), no cookie jar shared by every
client, no redirects, no decompression (the body goes to the client as the upstream encoded it).
"""

from __future__ import annotations

import base64
import contextvars
import socket
import urllib.request
from typing import Any

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp.client_reqrep import ClientRequest
from aiohttp.tracing import Trace
from yarl import URL

from freshtoken._serve import is_loopback_host
from freshtoken.proxy._limits import Limits

__all__ = ["Attempt", "EnvProxy", "env_proxy", "keepalive_socket", "open_session"]

# TCP keep-alive probes on every upstream connection: an idle SSE stream has no read timeout, so
# a peer that vanished without a FIN or RST is found by the kernel (after about 75 s + 3 x 15 s).
_KEEPIDLE = 75
_KEEPINTVL = 15
_KEEPCNT = 3

# What aiohttp would add on its own: the client's own headers (or none) are forwarded instead.
_SKIP_AUTO = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


def keepalive_socket(addr_info: AddrInfoType) -> socket.socket:
    """A non-blocking TCP socket for ``addr_info`` with keep-alive probes on."""
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=type_, proto=proto)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, _KEEPIDLE)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, _KEEPINTVL)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, _KEEPCNT)
    except BaseException:
        sock.close()
        raise
    return sock


class Attempt:
    """What the connector learned about one upstream attempt: was its connection reused?"""

    __slots__ = ("reused",)

    def __init__(self) -> None:
        self.reused = False


# Set by the caller around one request; connect() runs in the caller's task, so it sees it.
ATTEMPT: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar(
    "freshtoken_attempt", default=None
)


class _Connector(aiohttp.TCPConnector):
    """A connector that tells the current :class:`Attempt` whether its connection was pooled.

    A request that failed on a pooled connection before any response arrived may have lost a
    race with the server closing that idle connection; only then is it safe to send again.
    """

    async def connect(
        self, req: ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> aiohttp.connector.Connection:
        conn = await super().connect(req, traces, timeout)
        attempt = ATTEMPT.get()
        protocol = conn.protocol
        if attempt is not None and protocol is not None:
            attempt.reused = getattr(protocol, "_freshtoken_used", False)
            protocol._freshtoken_used = True  # type: ignore[attr-defined]
        return conn


def open_session(limits: Limits) -> aiohttp.ClientSession:
    """The proxy's upstream session (call inside the running loop; close it on stop)."""
    connector = _Connector(
        limit=0,
        limit_per_host=limits.upstream_connections,
        keepalive_timeout=limits.upstream_idle_timeout,
        use_dns_cache=True,
        ttl_dns_cache=10,
        happy_eyeballs_delay=0.25,
        socket_factory=keepalive_socket,
        enable_cleanup_closed=False,
    )
    return aiohttp.ClientSession(
        connector=connector,
        # A cookie jar would be shared by every client of the proxy: cookies stay end-to-end.
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        # Proxy settings are read from the environment once per target (see env_proxy), not
        # on every request: aiohttp's trust_env looks them up (and ~/.netrc) in a thread per
        # request, and a ~/.netrc entry would clash with the bearer header.
        trust_env=False,
        skip_auto_headers=_SKIP_AUTO,
        # The connect timeout covers TCP and TLS; the response head and body reads are bounded
        # by the caller (an SSE stream must not be cut for being quiet).
        timeout=aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=limits.connect_timeout, sock_read=None
        ),
        raise_for_status=False,
    )


class EnvProxy:
    """The forward proxy (from ``HTTP(S)_PROXY`` / ``NO_PROXY``) that a target goes through.

    Its credentials go in ``Proxy-Authorization``: on the CONNECT request for an https upstream,
    on every request for a plain-http one (the proxy reads those requests whole).
    """

    __slots__ = ("connect_headers", "request_headers", "url")

    def __init__(self, url: URL, authorization: str | None, *, tunnel: bool) -> None:
        self.url = url
        credentials = {} if authorization is None else {"Proxy-Authorization": authorization}
        self.connect_headers = credentials if tunnel else {}
        self.request_headers = {} if tunnel else credentials

    def kwargs(self) -> dict[str, Any]:
        return {"proxy": self.url, "proxy_headers": self.connect_headers or None}


def env_proxy(upstream_url: str) -> EnvProxy | None:
    """The environment's proxy for ``upstream_url``; None for a direct connection.

    Loopback upstreams are always reached directly: a proxy on another host cannot reach them.
    """
    url = URL(upstream_url)
    host = url.host or ""
    if is_loopback_host(host) or urllib.request.proxy_bypass(host):
        return None
    raw = urllib.request.getproxies().get(url.scheme)
    if not raw:
        return None
    proxy = URL(raw if "://" in raw else f"http://{raw}")
    authorization = None
    if proxy.user is not None:
        credentials = f"{proxy.user}:{proxy.password or ''}".encode()
        authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
    return EnvProxy(proxy.with_user(None), authorization, tunnel=url.scheme == "https")
