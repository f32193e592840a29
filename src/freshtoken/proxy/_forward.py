"""Forwarding one client request upstream: a fresh bearer per send, one refresh and one replay on
an auth failure, bounded waits, and a body that reaches the client whole or visibly cut."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from freshtoken._errors import InvalidGrantError, TokenSourceError
from freshtoken._timeline import Timeline, fingerprint
from freshtoken.proxy._client import ATTEMPT, Attempt, EnvProxy
from freshtoken.proxy._limits import Limits
from freshtoken.proxy._matcher import AuthFailureMatcher, may_match
from freshtoken.proxy._sse import FirstEventScanner
from freshtoken.proxy._tokens import BaseTokenSource, TokenSource

__all__ = ["Exchange", "Forwarder", "Refused", "Target", "error_response"]

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
# Credentials of the local client never reach the upstream; the client sets Host and the proxy
# asks for an unencoded body so that it can read a JSON error or the first SSE event without
# decompressing. Expect is answered by the proxy's own server, never passed on.
_DROP_UPSTREAM = _HOP_BY_HOP | {"authorization", "host", "accept-encoding", "expect"}
_JSON_RPC_SERVER_ERROR = -32000
# A replay whose token was superseded meanwhile goes out again with the newest one, but only a
# few times: each extra send needs a rotation that happened during this very request.
_MAX_SENDS = 4


@dataclass(slots=True)
class Target:
    name: str
    upstream_url: str
    origin: str
    # Requests must stay under this path of the upstream (no trailing slash; "" is the origin).
    path_prefix: str
    source: TokenSource
    ssl: ssl.SSLContext | bool
    proxy: EnvProxy | None
    fingerprints: dict[str, str] = field(default_factory=dict)
    urls: dict[str, URL] = field(default_factory=dict)

    def url(self, suffix: str) -> URL:
        """The upstream URL for a local path suffix (a client uses a handful: cached)."""
        known = self.urls.get(suffix)
        if known is None:
            if len(self.urls) > 64:
                self.urls.clear()
            known = self.urls[suffix] = URL(self.origin + suffix, encoded=True)
        return known

    def fp(self, token: str) -> str:
        known = self.fingerprints.get(token)
        if known is None:
            if len(self.fingerprints) > 16:
                self.fingerprints.clear()
            known = self.fingerprints[token] = fingerprint(token) or ""
        return known


class Refused(Exception):
    """A request answered by the proxy itself with a JSON-RPC error."""

    def __init__(
        self,
        status: int,
        message: str,
        data: Mapping[str, Any] | None = None,
        *,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.data = data
        self.close = close


class _UpstreamFailure(Exception):
    """The upstream exchange broke before anything went to the client: answered with an error."""

    def __init__(self, status: int, what: str) -> None:
        super().__init__(what)
        self.status = status
        self.what = what


class _Cut(Exception):
    """The upstream body broke after the client response started: the client must see a cut."""


def error_response(
    status: int,
    message: str,
    rpc_id: Any,
    data: Mapping[str, Any] | None,
) -> web.Response:
    """A JSON-RPC error answered by the proxy itself."""
    error: dict[str, Any] = {"code": _JSON_RPC_SERVER_ERROR, "message": message}
    if data is not None:
        error["data"] = dict(data)
    body = json.dumps({"jsonrpc": "2.0", "id": rpc_id, "error": error})
    return web.Response(status=status, text=body, content_type="application/json")


class Exchange:
    """One client request as it passes through the proxy."""

    __slots__ = (
        "_parsed",
        "body",
        "complete",
        "failure",
        "head",
        "read",
        "request",
        "rid",
        "suffix",
        "target",
    )

    def __init__(self, request: web.BaseRequest, target: Target, suffix: str, body: bytes):
        self.request = request
        self.target = target
        self.suffix = suffix
        self.body = body
        self.rid: str | None = None
        # What was read of the current upstream response: its first bytes, whether that is the
        # whole body, and whether reading started at all.
        self.head = b""
        self.complete = False
        self.read = False
        # A body that broke while it was read for the auth-failure check: reported if this
        # response is delivered, ignored if it is replayed.
        self.failure: _UpstreamFailure | None = None
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


class Forwarder:
    """Sends exchanges upstream through one aiohttp session and answers the client."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        limits: Limits,
        matcher: AuthFailureMatcher,
        timeline: Timeline | None,
    ) -> None:
        self.session = session
        self.limits = limits
        self.matcher = matcher
        self.timeline = timeline

    async def forward(self, ex: Exchange) -> web.StreamResponse:
        target = ex.target
        source = target.source
        try:
            token = _checked(await source.token())
        except Exception as exc:
            return self._token_failure(ex, exc)
        url = target.url(ex.suffix)
        headers = _upstream_headers(ex.request.headers)
        if target.proxy is not None:
            headers.update(target.proxy.request_headers)
        timeline = self.timeline
        sends = 0
        while True:
            sends += 1
            ex.head, ex.complete, ex.read, ex.failure = b"", False, False, None
            if timeline is not None:
                timeline.record(
                    "proxy",
                    "upstream.send",
                    request_id=ex.rid,
                    token_fingerprint=target.fp(token),
                    attempt=sends,
                )
            headers["Authorization"] = f"Bearer {token}"
            try:
                upstream = await self._send(ex, url, headers)
            except _UpstreamFailure as failure:
                return self._upstream_failure(ex, failure)
            try:
                if timeline is not None:
                    timeline.record(
                        "proxy", "upstream.response", request_id=ex.rid, status=upstream.status
                    )
                reason = await self._auth_failure(ex, upstream) if sends < _MAX_SENDS else None
                newer: str | None = None
                if reason is not None and sends > 1:
                    # After the replay only a token that was superseded meanwhile is worth
                    # another send; otherwise the failure goes back to the client as it came.
                    newer = await _newer_than(source, token)
                    if newer is None:
                        reason = None
                if reason is None:
                    return await self._deliver(ex, upstream)
            except _UpstreamFailure as failure:
                return self._upstream_failure(ex, failure)
            finally:
                # A no-op once the body was read to the end (the connection is back in the pool);
                # otherwise it closes the connection, which cancels the upstream request: the
                # client went away, or the response is an auth failure about to be replayed.
                upstream.close()
            log.debug(
                "target %s: auth failure (%s) with token %s; %s",
                target.name,
                reason,
                target.fp(token),
                "refreshing" if newer is None else "replaying with a newer token",
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
                token = _checked(newer if newer is not None else await source.refresh(token))
            except Exception as exc:
                return self._token_failure(ex, exc)
            if timeline is not None:
                timeline.record(
                    "proxy", "replay", request_id=ex.rid, token_fingerprint=target.fp(token)
                )

    async def _send(
        self, ex: Exchange, url: URL, headers: CIMultiDict[str]
    ) -> aiohttp.ClientResponse:
        target = ex.target
        kwargs = target.proxy.kwargs() if target.proxy is not None else {}
        attempt = Attempt()
        reset = ATTEMPT.set(attempt)
        try:
            for fresh in (False, True):
                try:
                    async with asyncio.timeout(self.limits.response_timeout):
                        return await self.session.request(
                            ex.request.method,
                            url,
                            data=_request_data(ex.body),
                            headers=headers,
                            allow_redirects=False,
                            ssl=target.ssl,
                            **kwargs,
                        )
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                    # A pooled connection the server closed just as the request went out: the
                    # request never reached it, so it is sent once more on a new connection,
                    # whatever its method. A new connection that fails is not retried.
                    if fresh or not attempt.reused or _head_received(exc):
                        raise _UpstreamFailure(502, _describe(exc)) from None
                    log.debug("target %s: pooled connection was closed; resending", target.name)
                except aiohttp.ConnectionTimeoutError:
                    raise _UpstreamFailure(
                        504, f"connecting timed out after {self.limits.connect_timeout:g} s"
                    ) from None
                except TimeoutError:
                    raise _UpstreamFailure(
                        504, f"no response within {self.limits.response_timeout:g} s"
                    ) from None
                except (aiohttp.ClientError, OSError) as exc:
                    raise _UpstreamFailure(502, _describe(exc)) from None
        finally:
            ATTEMPT.reset(reset)
        raise AssertionError("unreachable: the second send returns or raises")

    async def _auth_failure(self, ex: Exchange, upstream: aiohttp.ClientResponse) -> str | None:
        """Classify a response; keep what was read in ``ex`` for delivery."""
        status = upstream.status
        if status == 401:
            try:
                # Kept in case this 401 is the answer the client gets.
                await self._read_into(ex, upstream)
            except _UpstreamFailure as failure:
                # A replay needs no body; a delivery reports the break (what was read is gone).
                ex.failure = failure
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

    async def _read_into(self, ex: Exchange, upstream: aiohttp.ClientResponse) -> None:
        """Read the body into ``ex.head`` if it is small; else read a bounded head only."""
        ex.read = True
        limit = self.limits.json_peek_bytes
        length = upstream.content_length
        if length is not None and length > limit:
            return
        content = upstream.content
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = await self._readany(content, peeking=True)
            if not chunk:
                ex.head, ex.complete = b"".join(chunks), True
                return
            chunks.append(chunk)
            total += len(chunk)
        ex.head = b"".join(chunks)

    async def _readany(self, content: aiohttp.StreamReader, *, peeking: bool) -> bytes:
        """The next piece of a non-SSE body within the read timeout (none needed when the whole
        body has already arrived)."""
        try:
            if content.is_eof():
                # The whole body is buffered: no wait, no timer.
                return content.read_nowait()
            async with asyncio.timeout(self.limits.read_timeout):
                return await content.readany()
        except TimeoutError:
            if not peeking:
                raise _Cut("read timeout") from None
            raise _UpstreamFailure(
                504, f"no body bytes for {self.limits.read_timeout:g} s"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            if not peeking:
                raise _Cut(type(exc).__name__) from None
            raise _UpstreamFailure(502, f"response body cut short ({_describe(exc)})") from None

    async def _peek_sse(self, upstream: aiohttp.ClientResponse) -> tuple[bytes, Any]:
        scanner = FirstEventScanner()
        content = upstream.content
        chunks: list[bytes] = []
        total = 0
        try:
            async with asyncio.timeout(self.limits.sse_peek_timeout):
                while total < self.limits.sse_peek_bytes:
                    chunk = await content.readany()
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
        except TimeoutError:
            pass  # a slow first event: the stream is passed on as it is
        except (aiohttp.ClientError, OSError) as exc:
            raise _UpstreamFailure(502, f"event stream cut short ({_describe(exc)})") from None
        return b"".join(chunks), None

    async def _deliver(self, ex: Exchange, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        if ex.failure is not None:
            raise ex.failure
        status = upstream.status
        headers = _downstream_headers(upstream.headers)
        sse = upstream.headers.get("Content-Type", "").startswith("text/event-stream")
        if not ex.read and not sse:
            await self._read_into(ex, upstream)
        if ex.complete:
            self._record_response(ex, status)
            return web.Response(
                status=status, reason=upstream.reason, body=ex.head, headers=headers
            )
        return await self._stream(ex, upstream, headers, sse)

    async def _stream(
        self,
        ex: Exchange,
        upstream: aiohttp.ClientResponse,
        headers: CIMultiDict[str],
        sse: bool,
    ) -> web.StreamResponse:
        out = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
        length = upstream.content_length
        if length is not None:
            out.content_length = length
        await out.prepare(ex.request)
        self._record_response(ex, upstream.status)
        content = upstream.content
        chunk = ex.head
        try:
            while True:
                if chunk:
                    try:
                        await out.write(chunk)
                    except (ConnectionError, aiohttp.ClientConnectionError):
                        self._record_stream_end(ex, "client-gone")
                        return out
                try:
                    # An SSE stream may stay quiet for as long as the upstream likes; a dead
                    # connection still ends it (keep-alive probes, resets).
                    chunk = (
                        await content.readany()
                        if sse
                        else await self._readany(content, peeking=False)
                    )
                except (aiohttp.ClientError, OSError) as exc:
                    raise _Cut(type(exc).__name__) from None
                if not chunk:
                    break
        except asyncio.CancelledError:
            self._record_stream_end(ex, "client-gone")
            raise
        except _Cut as cut:
            # A body that broke must not look complete: the client connection is closed
            # without the end of the body (no last chunk, fewer bytes than announced).
            log.debug("target %s: upstream body cut (%s)", ex.target.name, cut)
            self._record_stream_end(ex, "upstream-error")
            transport = ex.request.transport
            if transport is not None:
                transport.close()
            return out
        self._record_stream_end(ex, "eof")
        with contextlib.suppress(ConnectionError):
            await out.write_eof()
        return out

    # -- answers and bookkeeping ----------------------------------------------------------

    def _record_response(self, ex: Exchange, status: int) -> None:
        if self.timeline is not None:
            self.timeline.record("proxy", "response", request_id=ex.rid, status=status)

    def _record_stream_end(self, ex: Exchange, reason: str) -> None:
        log.debug("target %s: stream ended (%s)", ex.target.name, reason)
        if self.timeline is not None:
            self.timeline.record("proxy", "stream.end", request_id=ex.rid, reason=reason)

    def error(
        self, ex: Exchange | None, status: int, message: str, data: Mapping[str, Any] | None
    ) -> web.Response:
        if self.timeline is not None:
            self.timeline.record(
                "proxy", "response", request_id=ex.rid if ex else None, status=status
            )
        return error_response(status, message, ex.rpc_id() if ex else None, data)

    def _upstream_failure(self, ex: Exchange, failure: _UpstreamFailure) -> web.Response:
        name = ex.target.name
        verb = "timed out" if failure.status == 504 else "failed"
        log.debug("target %s: upstream request %s: %s", name, verb, failure.what)
        return self.error(
            ex,
            failure.status,
            f"target {name}: upstream request {verb}: {failure.what}",
            {"target": name},
        )

    def _token_failure(self, ex: Exchange, exc: Exception) -> web.Response:
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
        return self.error(ex, status, message, {"target": name, "reason": type(exc).__name__})


async def _newer_than(source: TokenSource, stale: str) -> str | None:
    if isinstance(source, BaseTokenSource):
        return await source.current_if_newer(stale)
    return None


def _head_received(exc: aiohttp.ClientError) -> bool:
    """Whether a pooled connection's failure came after part of a response head: the request
    reached the server, so it is not sent again. (A connection that never opened is not a
    reused one, so it never gets here.)"""
    # aiohttp puts the part of a response head it had parsed in ``message``.
    return isinstance(exc, aiohttp.ServerDisconnectedError) and not isinstance(exc.message, str)


def _describe(exc: BaseException) -> str:
    """What failed, in words a client can show (never the request, never a token)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate not trusted ({exc.certificate_error})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or type(exc.os_error).__name__})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the upstream closed the connection without a response"
    if isinstance(exc, aiohttp.ClientResponseError):
        # The parser's reason only: the lines after it quote the upstream's bytes.
        reason = exc.message.splitlines()[0] if exc.message else ""
        return f"malformed response ({reason[:200].rstrip(':')})"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "malformed or incomplete body"
    return str(exc) or type(exc).__name__


def _checked(token: str) -> str:
    # The token goes into a header line: a line break would let a token source inject headers.
    if "\r" in token or "\n" in token:
        raise TokenSourceError("the token source returned a token with a line break")
    return token


def _connection_tokens(headers: Mapping[str, str]) -> frozenset[str]:
    value = headers.get("Connection")
    if not value:
        return frozenset()
    return frozenset(t.strip().lower() for t in value.split(",") if t.strip())


def _upstream_headers(incoming: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """The end-to-end headers for the upstream request."""
    named = _connection_tokens(incoming)
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in incoming.items():
        lower = key.lower()
        if lower not in _DROP_UPSTREAM and lower not in named:
            out.add(key, value)
    out["Accept-Encoding"] = "identity"
    return out


def _downstream_headers(incoming: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    named = _connection_tokens(incoming)
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in incoming.items():
        lower = key.lower()
        if lower in _HOP_BY_HOP or lower in named:
            continue
        out.add(key, value)
    return out


# aiohttp writes a bytes body in one piece and warns past 1 MiB that this can stall the loop; a
# file-like body is written in chunks. A fresh reader per send, because a replay sends it again.
_CHUNKED_BODY_FROM = 1024 * 1024


def _request_data(body: bytes) -> bytes | io.BytesIO | None:
    if not body:
        return None
    if len(body) > _CHUNKED_BODY_FROM:
        return io.BytesIO(body)
    return body
