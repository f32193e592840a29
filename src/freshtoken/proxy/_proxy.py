"""The loopback proxy: forwards MCP traffic, injecting a fresh bearer on every hop."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import ssl
from collections.abc import Collection
from urllib.parse import urlsplit

from aiohttp import web
from multidict import CIMultiDictProxy

from freshtoken._errors import InvalidGrantError
from freshtoken._lifecycle import AsyncLifecycle
from freshtoken._serve import LoopbackSite, is_loopback_host
from freshtoken._timeline import Timeline, fingerprint
from freshtoken.proxy._client import env_proxy, open_session
from freshtoken.proxy._forward import Exchange, Forwarder, Refused, Target
from freshtoken.proxy._guards import (
    authority_is_loopback,
    escapes,
    origin_is_loopback,
    under_prefix,
)
from freshtoken.proxy._limits import Limits
from freshtoken.proxy._matcher import AuthFailureMatcher, default_matcher
from freshtoken.proxy._server import AcceptErrorGuard, ProxyServer
from freshtoken.proxy._tokens import BaseTokenSource, TokenSource

__all__ = ["Proxy", "valid_target_name"]

log = logging.getLogger("freshtoken.proxy")

_CONTROL = "_control"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]*")


def valid_target_name(name: str) -> bool:
    """Whether ``name`` can be a target: URL-safe and not the reserved control segment."""
    return _NAME.fullmatch(name) is not None and name != _CONTROL


class Proxy(AsyncLifecycle):
    """A loopback HTTP proxy in front of many OAuth-protected MCP servers.

    ``async with Proxy() as proxy: url = proxy.register("name", upstream_url, source)``; the
    client then talks to ``url`` without any credentials. Every upstream request carries the
    source's current token. On an auth failure (401, a 200 JSON body or first SSE event that
    ``matcher`` classifies as one) the proxy force-refreshes once and replays once; a failure
    after the replay goes back to the client as it came, unless its token was superseded
    meanwhile (then the newest token is used, without another grant).

    ``secret=None`` puts a random capability secret in every local URL; ``""`` disables it.
    ``limits`` holds every timeout and size limit (see :class:`Limits`).
    ``timeline=None`` records nothing (a long-running proxy must not grow a list forever).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        secret: str | None = None,
        allowed_origins: Collection[str] = (),
        matcher: AuthFailureMatcher | None = None,
        limits: Limits | None = None,
        upstream_ssl: ssl.SSLContext | None = None,
        timeline: Timeline | None = None,
    ) -> None:
        if not is_loopback_host(host):
            raise ValueError(f"refusing to bind {host!r}: the proxy listens on loopback only")
        if secret is not None and secret and not _NAME.fullmatch(secret):
            raise ValueError("the secret must be URL-safe (letters, digits, '-', '_', '.', '~')")
        self._host = host.strip("[]")
        self._port = port
        self.secret = secrets.token_urlsafe(24) if secret is None else secret
        self._prefix = f"/{self.secret}/" if self.secret else "/"
        self.allowed_origins = frozenset(allowed_origins)
        self.matcher: AuthFailureMatcher = matcher or default_matcher
        self.limits = limits or Limits()
        self._upstream_ssl = upstream_ssl
        self.timeline = timeline
        self._targets: dict[str, Target] = {}
        self._ids = itertools.count(1)
        self._authority_ok: dict[str, bool] = {}
        self._origin_ok: dict[str, bool] = {}
        self._forwarder: Forwarder | None = None
        self._server: ProxyServer | None = None
        self._site: LoopbackSite | None = None
        self._accept_guard: AcceptErrorGuard | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the loopback socket and open the upstream client session."""
        session = open_session(self.limits)
        self._forwarder = Forwarder(session, self.limits, self.matcher, self.timeline)
        self._server = ProxyServer(self._handle, limits=self.limits)
        site = LoopbackSite(self._server, host=self._host, port=self._port)
        try:
            await site.start()
        except BaseException:
            await session.close()
            raise
        self.port = site.port
        self._site = site
        self._accept_guard = AcceptErrorGuard(asyncio.get_running_loop(), (self._host, self.port))
        log.debug("proxy listening on %s:%d", self._host, self.port)

    async def stop(self) -> None:
        """Stop serving, close the upstream session and the token sources' HTTP clients."""
        site, self._site = self._site, None
        if site is not None:
            await site.stop()
        guard, self._accept_guard = self._accept_guard, None
        if guard is not None:
            guard.close()
        forwarder, self._forwarder = self._forwarder, None
        if forwarder is not None:
            await forwarder.session.close()
        for target in self._targets.values():
            aclose = getattr(target.source, "aclose", None)
            if aclose is not None:
                await aclose()

    @property
    def open_connections(self) -> int:
        """Client connections open right now."""
        return self._server.open_connections if self._server is not None else 0

    # -- public API ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the listening socket."""
        if self._site is None:
            raise RuntimeError("the proxy is not running (use it as an async context manager)")
        return self._site.url

    @property
    def url(self) -> str:
        """Base of every local URL: ``http://HOST:PORT/<secret>`` (no trailing slash)."""
        return self.base_url + self._prefix.rstrip("/")

    @property
    def control_url(self) -> str:
        """The control path: ``POST {control_url}/refresh/<name>`` force-refreshes a target."""
        return f"{self.url}/{_CONTROL}"

    @property
    def targets(self) -> dict[str, str]:
        """Target name → upstream URL."""
        return {name: t.upstream_url for name, t in self._targets.items()}

    def register(
        self,
        name: str,
        upstream_url: str,
        token_source: TokenSource,
        *,
        ssl_context: ssl.SSLContext | None = None,
        allow_insecure_http: bool = False,
    ) -> str:
        """Serve ``upstream_url`` as target ``name``; return the local URL the client uses.

        The local URL is ``{url}/<name>`` followed by the upstream URL's path and query; a
        path under ``{url}/<name>`` goes to the same path on the upstream's origin, as long as
        it stays under the upstream URL's path (the bearer goes nowhere else on that origin).
        ``ssl_context`` verifies this upstream (default: the proxy's ``upstream_ssl``). A plain
        ``http://`` upstream off loopback would carry the bearer in clear text: refused unless
        ``allow_insecure_http``.
        """
        if not valid_target_name(name):
            raise ValueError(f"invalid target name {name!r}: use letters, digits, '.', '_', '-'")
        if name in self._targets:
            raise ValueError(f"target {name!r} is already registered")
        parts = urlsplit(upstream_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"upstream URL must be http(s)://host[:port]/path, got {upstream_url!r}"
            )
        if "@" in parts.netloc:
            raise ValueError(f"target {name!r}: credentials in the upstream URL are not supported")
        if (
            parts.scheme == "http"
            and not allow_insecure_http
            and not is_loopback_host(parts.hostname or "")
        ):
            raise ValueError(
                f"target {name!r}: refusing to send bearer tokens over plain http to "
                f"{parts.hostname}; use https, or allow_insecure_http=True"
            )
        context = ssl_context or self._upstream_ssl
        self._targets[name] = Target(
            name=name,
            upstream_url=upstream_url,
            origin=f"{parts.scheme}://{parts.netloc}",
            path_prefix=parts.path.rstrip("/"),
            source=token_source,
            # True: aiohttp's default verification against the system's trust store.
            ssl=context if context is not None else True,
            proxy=env_proxy(upstream_url),
        )
        if (
            isinstance(token_source, BaseTokenSource)
            and token_source.timeline is None
            and self.timeline is not None
        ):
            token_source.timeline = self.timeline
            token_source.name = token_source.name or name
        return self.local_url(name)

    def local_url(self, name: str) -> str:
        """The local URL of a registered target (what :meth:`register` returned)."""
        target = self._targets[name]
        parts = urlsplit(target.upstream_url)
        path = parts.path or "/"
        query = f"?{parts.query}" if parts.query else ""
        return f"{self.url}/{name}{path}{query}"

    async def refresh(self, name: str) -> None:
        """Force a refresh of target ``name``'s token (e.g. the host app's "refresh now")."""
        source = self._targets[name].source
        stale = source.current if isinstance(source, BaseTokenSource) else await source.token()
        if stale is None:
            await source.token()
        else:
            await source.refresh(stale)

    # -- request handling ------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        forwarder = self._forwarder
        assert forwarder is not None
        ex: Exchange | None = None
        try:
            self._check_caller(request.headers)
            raw = request.raw_path
            prefix = self._prefix
            if not raw.startswith(prefix):
                raise Refused(404, "no such target")
            name, sep, tail = raw[len(prefix) :].partition("/")
            if "?" in name:
                name, _, query = name.partition("?")
                suffix = f"/?{query}"
            else:
                suffix = "/" + tail if sep else "/"
            if name == _CONTROL:
                return await self._control(request, tail)
            target = self._targets.get(name)
            if target is None:
                raise Refused(404, "no such target")
            path = suffix.partition("?")[0]
            if escapes(path) or not under_prefix(path, target.path_prefix):
                raise Refused(
                    403, f"target {name}: path outside the target's URL", {"target": name}
                )
            body = await self._read_body(request)
            ex = Exchange(request, target, suffix, body)
            if self.timeline is not None:
                ex.rid = f"px{next(self._ids)}"
                self.timeline.record(
                    "proxy",
                    "request",
                    request_id=ex.rid,
                    target=name,
                    method=request.method,
                    rpc_method=ex.rpc_method(),
                )
            return await forwarder.forward(ex)
        except Refused as refused:
            response = forwarder.error(ex, refused.status, refused.message, refused.data)
            if refused.close:
                response.force_close()
            return response

    def _check_caller(self, headers: CIMultiDictProxy[str]) -> None:
        authority = headers.get("Host")
        if authority is not None:
            ok = self._authority_ok.get(authority)
            if ok is None:
                ok = authority_is_loopback(authority)
                if len(self._authority_ok) < 64:
                    self._authority_ok[authority] = ok
            if not ok:
                raise Refused(403, "Host is not a loopback name")
        origin = headers.get("Origin")
        if origin is not None:
            ok = self._origin_ok.get(origin)
            if ok is None:
                ok = origin in self.allowed_origins or origin_is_loopback(origin)
                if len(self._origin_ok) < 64:
                    self._origin_ok[origin] = ok
            if not ok:
                raise Refused(403, "Origin not allowed")

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        """The whole request body (kept for a replay), within max_body and the body timeout."""
        if not request.body_exists:
            return b""
        limit = self.limits.max_body
        length = request.content_length
        if length is not None and length > limit:
            raise Refused(413, f"request body over {limit} bytes", close=True)
        content = request.content
        chunks: list[bytes] = []
        total = 0
        while True:
            if content.is_eof():
                chunk = content.read_nowait()  # the rest of the body is buffered
            else:
                try:
                    async with asyncio.timeout(self.limits.body_timeout):
                        chunk = await content.readany()
                except TimeoutError:
                    raise Refused(408, "request body timed out", close=True) from None
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > limit:
                raise Refused(413, f"request body over {limit} bytes", close=True)
            chunks.append(chunk)

    async def _control(self, request: web.BaseRequest, tail: str) -> web.StreamResponse:
        action, _, name = tail.partition("?")[0].partition("/")
        if action != "refresh" or not name:
            raise Refused(404, "unknown control action")
        if request.method != "POST":
            raise Refused(405, "use POST")
        if name not in self._targets:
            raise Refused(404, "no such target")
        try:
            await self.refresh(name)
        except InvalidGrantError as exc:
            raise Refused(502, f"target {name}: {exc}", {"target": name}) from None
        except Exception as exc:
            raise Refused(
                503, f"target {name}: token refresh failed: {exc}", {"target": name}
            ) from None
        source = self._targets[name].source
        current = source.current if isinstance(source, BaseTokenSource) else None
        return web.json_response({"target": name, "token": fingerprint(current)})
