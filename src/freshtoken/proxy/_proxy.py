"""The loopback proxy: forwards MCP traffic, injecting a fresh bearer on every hop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import secrets
import ssl
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from freshtoken._errors import InvalidGrantError, TokenSourceError
from freshtoken._lifecycle import AsyncLifecycle
from freshtoken._serve import LoopbackSite, is_loopback_host
from freshtoken._timeline import Timeline, fingerprint
from freshtoken.proxy._limits import Limits
from freshtoken.proxy._matcher import AuthFailureMatcher, default_matcher, may_match
from freshtoken.proxy._sse import FirstEventScanner
from freshtoken.proxy._tokens import BaseTokenSource, TokenSource
from freshtoken.proxy._upstream import Upstream, UpstreamResponse

__all__ = ["Proxy"]

log = logging.getLogger("freshtoken.proxy")

# RFC 9110 §7.6.1 hop-by-hop fields (plus the pre-standard Proxy-Connection), which a proxy never
# forwards; the Content-Length of a body the proxy re-frames is recomputed, never copied.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
# Credentials of the local client never reach the upstream; the proxy sets Host and asks for an
# unencoded body so that it can read a JSON error or the first SSE event without decompressing.
_DROP_UPSTREAM = _HOP_BY_HOP | {"authorization", "host", "accept-encoding"}
_CONTROL = "_control"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]*")
_JSON_RPC_SERVER_ERROR = -32000


@dataclass(slots=True)
class _Target:
    name: str
    upstream_url: str
    origin: str
    source: TokenSource
    ssl: ssl.SSLContext | None
    fingerprints: dict[str, str] = field(default_factory=dict)

    def fp(self, token: str) -> str:
        known = self.fingerprints.get(token)
        if known is None:
            if len(self.fingerprints) > 16:
                self.fingerprints.clear()
            known = self.fingerprints[token] = fingerprint(token) or ""
        return known


def valid_target_name(name: str) -> bool:
    """Whether ``name`` can be a target: URL-safe and not the reserved control segment."""
    return _NAME.fullmatch(name) is not None and name != _CONTROL


class _Refused(Exception):
    def __init__(self, status: int, message: str, data: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.data = data


class Proxy(AsyncLifecycle):
    """A loopback HTTP proxy in front of many OAuth-protected MCP servers.

    ``async with Proxy() as proxy: url = proxy.register("name", upstream_url, source)``; the
    client then talks to ``url`` without any credentials. Every upstream request carries the
    source's current token. On an auth failure (401, a 200 JSON body or first SSE event that
    ``matcher`` classifies as one) the proxy force-refreshes once and replays once; anything
    after the replay goes back to the client as it came.

    ``secret=None`` puts a random capability secret in every local URL; ``""`` disables it.
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
        self._targets: dict[str, _Target] = {}
        self._ids = itertools.count(1)
        self._authority_ok: dict[str, bool] = {}
        self._origin_ok: dict[str, bool] = {}
        self._upstream: Upstream | None = None
        self._site: LoopbackSite | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the loopback socket and open the shared upstream connection pool."""
        # The body goes to the client as the upstream encoded it; cookies stay the client's
        # (end-to-end headers, never a jar shared by every client of the proxy).
        self._upstream = Upstream(connect_timeout=self.limits.connect_timeout)
        # Handler cancellation is what turns "the client went away" into closing the upstream
        # request, even while the upstream stream is idle.
        site = LoopbackSite(
            self._handle, host=self._host, port=self._port, handler_cancellation=True
        )
        try:
            await site.start()
        except BaseException:
            await self._upstream.close()
            raise
        self.port = site.port
        self._site = site
        log.debug("proxy listening on %s:%d", self._host, self.port)

    async def stop(self) -> None:
        """Stop serving, close the upstream pool and the token sources' HTTP clients."""
        site, self._site = self._site, None
        if site is not None:
            await site.stop()
        upstream, self._upstream = self._upstream, None
        if upstream is not None:
            await upstream.close()
        for target in self._targets.values():
            aclose = getattr(target.source, "aclose", None)
            if aclose is not None:
                await aclose()

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

        The local URL is ``{url}/<name>`` followed by the upstream URL's path and query; any
        path under ``{url}/<name>`` goes to the same path on the upstream's origin.
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
        if (
            parts.scheme == "http"
            and not allow_insecure_http
            and not is_loopback_host(parts.hostname or "")
        ):
            raise ValueError(
                f"target {name!r}: refusing to send bearer tokens over plain http to "
                f"{parts.hostname}; use https, or allow_insecure_http=True"
            )
        self._targets[name] = _Target(
            name=name,
            upstream_url=upstream_url,
            origin=f"{parts.scheme}://{parts.netloc}",
            source=token_source,
            ssl=ssl_context or self._upstream_ssl,
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
        rid: str | None = None
        try:
            self._check_caller(request.headers)
            raw = request.raw_path
            prefix = self._prefix
            if not raw.startswith(prefix):
                raise _Refused(404, "no such target")
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
                raise _Refused(404, "no such target")
            body = await self._read_body(request)
            exchange = _Exchange(request, target, suffix, body)
            if self.timeline is not None:
                rid = exchange.rid = f"px{next(self._ids)}"
                self.timeline.record(
                    "proxy",
                    "request",
                    request_id=rid,
                    target=name,
                    method=request.method,
                    rpc_method=exchange.rpc_method(),
                )
            return await self._forward(exchange)
        except _Refused as refused:
            return self._error(refused.status, refused.message, None, refused.data, rid)

    def _check_caller(self, headers: CIMultiDictProxy[str]) -> None:
        authority = headers.get("Host")
        if authority is not None:
            ok = self._authority_ok.get(authority)
            if ok is None:
                ok = _authority_is_loopback(authority)
                if len(self._authority_ok) < 64:
                    self._authority_ok[authority] = ok
            if not ok:
                raise _Refused(403, "Host is not a loopback name")
        origin = headers.get("Origin")
        if origin is not None:
            ok = self._origin_ok.get(origin)
            if ok is None:
                ok = origin in self.allowed_origins or _origin_is_loopback(origin)
                if len(self._origin_ok) < 64:
                    self._origin_ok[origin] = ok
            if not ok:
                raise _Refused(403, "Origin not allowed")

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        if not request.body_exists:
            return b""
        length = request.content_length
        if length is not None:
            if length > self.limits.max_body:
                raise _Refused(413, f"request body over {self.limits.max_body} bytes")
            return await request.content.readexactly(length)
        chunks: list[bytes] = []
        total = 0
        async for chunk in request.content.iter_any():
            total += len(chunk)
            if total > self.limits.max_body:
                raise _Refused(413, f"request body over {self.limits.max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _control(self, request: web.BaseRequest, tail: str) -> web.StreamResponse:
        action, _, name = tail.partition("?")[0].partition("/")
        if action != "refresh" or not name:
            raise _Refused(404, "unknown control action")
        if request.method != "POST":
            raise _Refused(405, "use POST")
        if name not in self._targets:
            raise _Refused(404, "no such target")
        try:
            await self.refresh(name)
        except InvalidGrantError as exc:
            raise _Refused(502, f"target {name}: {exc}", {"target": name}) from None
        except Exception as exc:
            raise _Refused(
                503, f"target {name}: token refresh failed: {exc}", {"target": name}
            ) from None
        source = self._targets[name].source
        current = source.current if isinstance(source, BaseTokenSource) else None
        return web.json_response({"target": name, "token": fingerprint(current)})

    async def _forward(self, ex: _Exchange) -> web.StreamResponse:
        target = ex.target
        source = target.source
        client = self._upstream
        assert client is not None
        try:
            token = _checked(await source.token())
        except Exception as exc:
            return self._token_failure(ex, exc)
        request = ex.request
        method = request.method
        headers = _upstream_headers(request.headers)
        timeline = self.timeline
        for attempt in (1, 2):
            ex.head, ex.complete, ex.read = b"", False, False
            if timeline is not None:
                timeline.record(
                    "proxy",
                    "upstream.send",
                    request_id=ex.rid,
                    token_fingerprint=target.fp(token),
                    attempt=attempt,
                )
            try:
                upstream = await client.request(
                    method,
                    target.origin,
                    ex.suffix,
                    f"{headers}Authorization: Bearer {token}\r\n",
                    ex.body,
                    target.ssl,
                )
            except OSError as exc:
                log.debug("target %s failed: %s", target.name, type(exc).__name__)
                return self._error(
                    502,
                    f"target {target.name}: upstream request failed: {exc or type(exc).__name__}",
                    ex.rpc_id(),
                    {"target": target.name},
                    ex.rid,
                )
            try:
                if timeline is not None:
                    timeline.record(
                        "proxy", "upstream.response", request_id=ex.rid, status=upstream.status
                    )
                reason = await self._auth_failure(ex, upstream) if attempt == 1 else None
                if reason is None:
                    return await self._deliver(ex, upstream)
            finally:
                # A no-op once the body was read to the end (the connection is back in the pool);
                # otherwise it cancels the upstream request: the client went away, or the
                # response is an auth failure about to be replayed.
                upstream.close()
            log.debug(
                "target %s: auth failure (%s) with token %s; refreshing",
                target.name,
                reason,
                target.fp(token),
            )
            if timeline is not None:
                timeline.record(
                    "proxy",
                    "auth.failure",
                    request_id=ex.rid,
                    token_fingerprint=target.fp(token),
                    reason=reason,
                )
            try:
                token = _checked(await source.refresh(token))
            except Exception as exc:
                return self._token_failure(ex, exc)
            if timeline is not None:
                timeline.record(
                    "proxy", "replay", request_id=ex.rid, token_fingerprint=target.fp(token)
                )
        raise AssertionError("unreachable: the second attempt always delivers")

    async def _auth_failure(self, ex: _Exchange, upstream: UpstreamResponse) -> str | None:
        """Classify the first attempt's response; keep what was read in ``ex`` for delivery."""
        status = upstream.status
        if status == 401:
            await self._read_into(ex, upstream)
            return "401"
        if status != 200:
            return None
        ctype = upstream.headers.get("Content-Type", "")
        if ctype.startswith("application/json"):
            if upstream.headers.get("Content-Encoding", "identity") != "identity":
                return None
            await self._read_into(ex, upstream)
            if ex.complete and ex.head and may_match(self.matcher, ex.head):
                try:
                    message = json.loads(ex.head)
                except ValueError:
                    return None
                if self.matcher(message):
                    return "json"
            return None
        if ctype.startswith("text/event-stream") and ex.request.method == "POST":
            ex.head, message = await self._peek_sse(upstream)
            ex.read = True
            if message is not None and self.matcher(message):
                return "sse"
        return None

    async def _read_into(self, ex: _Exchange, upstream: UpstreamResponse) -> None:
        """Read the body into ``ex.head`` if it is small; else read a bounded head only."""
        ex.read = True
        limit = self.limits.json_peek_bytes
        length = upstream.content_length
        if length is not None:
            if length <= limit:
                ex.head, ex.complete = await upstream.read(), True
            return
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = await upstream.readany()
            if not chunk:
                ex.head, ex.complete = b"".join(chunks), True
                return
            chunks.append(chunk)
            total += len(chunk)
        ex.head = b"".join(chunks)

    async def _peek_sse(self, upstream: UpstreamResponse) -> tuple[bytes, Any]:
        scanner = FirstEventScanner()
        chunks: list[bytes] = []
        total = 0
        with contextlib.suppress(TimeoutError, OSError):
            async with asyncio.timeout(self.limits.sse_peek_timeout):
                while total < self.limits.sse_peek_bytes:
                    chunk = await upstream.readany()
                    if not chunk:
                        break
                    chunks.append(chunk)
                    total += len(chunk)
                    data = scanner.feed(chunk)
                    if data is not None:
                        try:
                            return b"".join(chunks), json.loads(data)
                        except ValueError:
                            break
        return b"".join(chunks), None

    async def _deliver(self, ex: _Exchange, upstream: UpstreamResponse) -> web.StreamResponse:
        status = upstream.status
        headers = _downstream_headers(upstream.headers)
        if not ex.read and not upstream.headers.get("Content-Type", "").startswith(
            "text/event-stream"
        ):
            await self._read_into(ex, upstream)
        if ex.complete:
            self._record_response(ex, status)
            return web.Response(
                status=status, reason=upstream.reason, body=ex.head, headers=headers
            )
        return await self._stream(ex, upstream, headers)

    async def _stream(
        self,
        ex: _Exchange,
        upstream: UpstreamResponse,
        headers: CIMultiDict[str],
    ) -> web.StreamResponse:
        out = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
        length = upstream.content_length
        if length is not None:
            out.content_length = length
        await out.prepare(ex.request)
        self._record_response(ex, upstream.status)
        reason = "eof"
        chunk = ex.head
        try:
            while True:
                if chunk:
                    try:
                        await out.write(chunk)
                    except (ConnectionError, aiohttp.ClientConnectionError):
                        reason = "client-gone"
                        break
                try:
                    chunk = await upstream.readany()
                except OSError:
                    reason = "upstream-error"
                    break
                if not chunk:
                    break
        except asyncio.CancelledError:
            self._record_stream_end(ex, "client-gone")
            raise
        self._record_stream_end(ex, reason)
        if reason == "client-gone":
            return out
        if reason == "upstream-error" and length is not None:
            # A fixed-length body cut short can only be signalled by closing the connection.
            transport = ex.request.transport
            if transport is not None:
                transport.close()
            return out
        with contextlib.suppress(ConnectionResetError):
            await out.write_eof()
        return out

    # -- bookkeeping -----------------------------------------------------------------------

    def _record_response(self, ex: _Exchange, status: int) -> None:
        if self.timeline is not None:
            self.timeline.record("proxy", "response", request_id=ex.rid, status=status)

    def _record_stream_end(self, ex: _Exchange, reason: str) -> None:
        log.debug("target %s: stream ended (%s)", ex.target.name, reason)
        if self.timeline is not None:
            self.timeline.record("proxy", "stream.end", request_id=ex.rid, reason=reason)

    def _token_failure(self, ex: _Exchange, exc: Exception) -> web.Response:
        name = ex.target.name
        if isinstance(exc, InvalidGrantError):
            status, message = 502, f"target {name}: credentials refused, re-authorize: {exc}"
        else:
            status, message = 503, f"target {name}: no access token available: {exc}"
        log.warning("%s", message)
        if self.timeline is not None:
            self.timeline.record(
                "proxy", "token.unavailable", request_id=ex.rid, error=type(exc).__name__
            )
        return self._error(
            status,
            message,
            ex.rpc_id(),
            {"target": name, "reason": type(exc).__name__},
            ex.rid,
        )

    def _error(
        self,
        status: int,
        message: str,
        rpc_id: Any,
        data: Mapping[str, Any] | None,
        rid: str | None,
    ) -> web.Response:
        error: dict[str, Any] = {"code": _JSON_RPC_SERVER_ERROR, "message": message}
        if data is not None:
            error["data"] = dict(data)
        body = json.dumps({"jsonrpc": "2.0", "id": rpc_id, "error": error})
        if self.timeline is not None:
            self.timeline.record("proxy", "response", request_id=rid, status=status)
        return web.Response(status=status, text=body, content_type="application/json")


class _Exchange:
    """One client request as it passes through the proxy."""

    __slots__ = (
        "_parsed",
        "body",
        "complete",
        "head",
        "read",
        "request",
        "rid",
        "suffix",
        "target",
    )

    def __init__(self, request: web.BaseRequest, target: _Target, suffix: str, body: bytes):
        self.request = request
        self.target = target
        self.suffix = suffix
        self.body = body
        self.rid: str | None = None
        self.head = b""
        self.complete = False
        self.read = False
        self._parsed: Any = _UNPARSED

    def _message(self) -> Any:
        # Parsed only when something needs it (the timeline or an error body), never on the
        # plain hot path.
        if self._parsed is _UNPARSED:
            self._parsed = None
            if self.body[:1] in (b"{", b"["):
                with contextlib.suppress(ValueError):
                    self._parsed = json.loads(self.body)
        return self._parsed

    def rpc_method(self) -> str | None:
        header = self.request.headers.get("Mcp-Method")
        if header is not None:
            return header
        message = self._message()
        if isinstance(message, dict) and isinstance(message.get("method"), str):
            return str(message["method"])
        return None

    def rpc_id(self) -> Any:
        message = self._message()
        if isinstance(message, dict):
            rpc_id = message.get("id")
            if isinstance(rpc_id, str | int) and not isinstance(rpc_id, bool):
                return rpc_id
        return None


_UNPARSED: Any = object()


def _connection_tokens(headers: Mapping[str, str]) -> frozenset[str]:
    value = headers.get("Connection")
    if not value:
        return frozenset()
    return frozenset(t.strip().lower() for t in value.split(",") if t.strip())


def _checked(token: str) -> str:
    # The token goes into a header line: a line break would let a token source inject headers.
    if "\r" in token or "\n" in token:
        raise TokenSourceError("the token source returned a token with a line break")
    return token


def _upstream_headers(incoming: CIMultiDictProxy[str]) -> str:
    """The end-to-end header lines for the upstream request (each ending in CRLF)."""
    named = _connection_tokens(incoming)
    lines = [
        f"{key}: {value}\r\n"
        for key, value in incoming.items()
        if (lower := key.lower()) not in _DROP_UPSTREAM and lower not in named
    ]
    lines.append("Accept-Encoding: identity\r\n")
    return "".join(lines)


def _downstream_headers(incoming: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    named = _connection_tokens(incoming)
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in incoming.items():
        lower = key.lower()
        if lower in _HOP_BY_HOP or lower in named:
            continue
        out.add(key, value)
    return out


def _authority_is_loopback(authority: str) -> bool:
    if authority.startswith("["):
        host = authority[1 : authority.find("]")]
    elif authority.count(":") == 1:
        host = authority.partition(":")[0]
    else:
        host = authority
    return is_loopback_host(host)


def _origin_is_loopback(origin: str) -> bool:
    parts = urlsplit(origin)
    return (
        parts.scheme in ("http", "https")
        and parts.hostname is not None
        and is_loopback_host(parts.hostname)
    )
