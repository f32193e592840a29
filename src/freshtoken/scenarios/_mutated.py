"""The mutated proxies behind the targeted mutants (:mod:`._mutants`): each is the real
:class:`~freshtoken.proxy.Proxy` with one method of the proxy, of its forwarder or of its token
source overridden, or one setting forced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from typing import Any, ClassVar, cast

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from freshtoken.proxy import (
    BaseTokenSource,
    Proxy,
    RefreshTokenSource,
    TokenSource,
    default_matcher,
)
from freshtoken.proxy._forward import Exchange, Forwarder

__all__ = [
    "AnswersNotReplayedProxy",
    "CutEndsCleanlyProxy",
    "ExpiryIgnoredProxy",
    "GetStreamBlocksRefreshProxy",
    "GraceIgnoredProxy",
    "InvalidGrantRetriedProxy",
    "JsonBodyUnreadProxy",
    "LastEventIdDroppedProxy",
    "LostGrantResentProxy",
    "MatcherIgnoredProxy",
    "NoExpiryMeansExpiredProxy",
    "NoRebindingGuardProxy",
    "NoSingleFlightProxy",
    "NoUpstreamCancelProxy",
    "RefreshAfterReplayProxy",
    "RefreshOn400Proxy",
    "RefreshOn403Proxy",
    "RefreshOn404Proxy",
    "ReopenOnCutProxy",
    "SseBufferedProxy",
    "SseUnpeekedProxy",
    "StreamLeftOpenProxy",
    "SubstringMatcherProxy",
    "TlsTrustIgnoredProxy",
    "TokenErrorsNotRetriedProxy",
]

_SSE = "text/event-stream"


# -- the mutated proxy -------------------------------------------------------------------------


class _MutantProxy(Proxy):
    """The real proxy, with a mutated forwarder and a hook on each registered token source."""

    forwarder: ClassVar[type[Forwarder]] = Forwarder

    async def start(self) -> None:
        await super().start()
        real = self._forwarder
        if self.forwarder is not Forwarder and real is not None:
            # The same session and settings; only the overridden behaviour differs.
            self._forwarder = self.forwarder(real.session, real.limits, real.matcher, real.timeline)

    def register(
        self,
        name: str,
        upstream_url: str,
        token_source: TokenSource,
        *,
        ssl_context: Any = None,
        allow_insecure_http: bool = False,
    ) -> str:
        self.mutate_source(token_source)
        return super().register(
            name,
            upstream_url,
            token_source,
            ssl_context=ssl_context,
            allow_insecure_http=allow_insecure_http,
        )

    def mutate_source(self, source: TokenSource) -> None:
        """Break the token source (nothing by default)."""


_DERIVED: dict[tuple[type[Any], type[Any]], type[Any]] = {}


def _derive(source: TokenSource, mixin: type[BaseTokenSource]) -> None:
    """Turn ``source`` into an instance of a subclass of its own class with ``mixin``'s methods
    first: the source the harness built keeps its state and gains the one overridden method."""
    base = type(source)
    derived = _DERIVED.get((mixin, base))
    if derived is None:
        derived = _DERIVED[(mixin, base)] = type(
            f"{mixin.__name__}{base.__name__}", (mixin, base), {}
        )
    source.__class__ = derived


# -- upstream responses seen through a different body ---------------------------------------------


class _Body:
    """An upstream event stream whose reads go through :meth:`next` (what a mutant overrides);
    the forwarder streams SSE with ``content.readany()`` alone."""

    def __init__(self, upstream: aiohttp.ClientResponse) -> None:
        self.upstream = upstream
        self.status = upstream.status
        self.reason = upstream.reason
        self.content_length = upstream.content_length
        self.content = self

    async def readany(self) -> bytes:
        return await self.next()

    async def next(self) -> bytes:
        return await self.upstream.content.readany()

    def close(self) -> None:
        self.upstream.close()


def _as_response(body: _Body) -> aiohttp.ClientResponse:
    # The forwarder reads a response's status, reason, length, headers and content only.
    return cast(aiohttp.ClientResponse, body)


async def _forever() -> bytes:
    # Until the handler is cancelled: its client went away, or the proxy stops.
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


class _LeftOpen(_Body):
    async def next(self) -> bytes:
        try:
            chunk = await self.upstream.content.readany()
        except (aiohttp.ClientError, OSError):
            return await _forever()
        return chunk or await _forever()


class _EndsCleanly(_Body):
    async def next(self) -> bytes:
        try:
            return await self.upstream.content.readany()
        except (aiohttp.ClientError, OSError):
            return b""  # as if the body had ended


class _StreamMutant(Forwarder):
    """Streams SSE bodies through ``body`` instead of reading the upstream directly."""

    body: ClassVar[type[_Body]] = _Body

    async def _stream(
        self,
        ex: Exchange,
        upstream: aiohttp.ClientResponse,
        headers: CIMultiDict[str],
        sse: bool,
    ) -> web.StreamResponse:
        if not sse:
            return await super()._stream(ex, upstream, headers, sse)
        body = self.body(upstream)
        try:
            return await super()._stream(ex, _as_response(body), headers, sse)
        finally:
            body.close()


class _StreamLeftOpen(_StreamMutant):
    body = _LeftOpen


class _CutEndsCleanly(_StreamMutant):
    body = _EndsCleanly


class _Reopened(_Body):
    """A POST's event stream that, ending without the response to its request, is sent upstream
    again (the tool runs again) and read on from the new response."""

    def __init__(self, upstream: aiohttp.ClientResponse, forwarder: _ReopenOnCut, ex: Exchange):
        super().__init__(upstream)
        self.forwarder = forwarder
        self.ex = ex
        self.seen = ex.head
        self.again: aiohttp.ClientResponse | None = None

    async def next(self) -> bytes:
        current = self.again or self.upstream
        try:
            chunk = await current.content.readany()
        except (aiohttp.ClientError, OSError):
            chunk = b""
        if chunk:
            self.seen = (self.seen + chunk)[-65536:]
            return chunk
        if self.again is not None or _answered(self.seen, self.ex.rpc_id()):
            return b""
        self.again = await self.forwarder.send_again(self.ex)
        return await self.next() if self.again is not None else b""

    def close(self) -> None:
        super().close()
        if self.again is not None:
            self.again.close()


def _answered(stream: bytes, rpc_id: Any) -> bool:
    for line in stream.splitlines():
        if not line.startswith(b"data:"):
            continue
        with contextlib.suppress(ValueError):
            message = json.loads(line[5:])
            if (
                isinstance(message, dict)
                and message.get("id") == rpc_id
                and "method" not in message
            ):
                return True
    return False


class _ReopenOnCut(Forwarder):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._sent: dict[int, tuple[URL, CIMultiDict[str]]] = {}

    async def forward(self, ex: Exchange) -> web.StreamResponse:
        try:
            return await super().forward(ex)
        finally:
            self._sent.pop(id(ex), None)

    async def _send(
        self, ex: Exchange, url: URL, headers: CIMultiDict[str]
    ) -> aiohttp.ClientResponse:
        self._sent[id(ex)] = (url, headers)
        return await super()._send(ex, url, headers)

    async def send_again(self, ex: Exchange) -> aiohttp.ClientResponse | None:
        """The request sent once more with the current token (refreshed once on a 401)."""
        url, headers = self._sent[id(ex)]
        source = ex.target.source
        token = await source.token()
        for _ in range(2):
            headers["Authorization"] = f"Bearer {token}"
            again = await super()._send(ex, url, headers)
            if again.status != 401:
                return again
            again.close()
            token = await source.refresh(token)
        return None

    async def _stream(
        self,
        ex: Exchange,
        upstream: aiohttp.ClientResponse,
        headers: CIMultiDict[str],
        sse: bool,
    ) -> web.StreamResponse:
        if not sse or ex.request.method != "POST":
            return await super()._stream(ex, upstream, headers, sse)
        body = _Reopened(upstream, self, ex)
        try:
            return await super()._stream(ex, _as_response(body), headers, sse)
        finally:
            body.close()


async def _drain(upstream: aiohttp.ClientResponse) -> None:
    with contextlib.suppress(aiohttp.ClientError, OSError):
        while await upstream.content.readany():
            pass


class _NoUpstreamCancel(Forwarder):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.draining: set[asyncio.Task[Any]] = set()

    async def _stream(
        self,
        ex: Exchange,
        upstream: aiohttp.ClientResponse,
        headers: CIMultiDict[str],
        sse: bool,
    ) -> web.StreamResponse:
        # The client went away: the upstream request is read to its end instead of closed.
        try:
            out = await super()._stream(ex, upstream, headers, sse)
        except asyncio.CancelledError:
            await self._drain(upstream)
            raise
        transport = ex.request.transport
        if transport is None or transport.is_closing():
            await self._drain(upstream)
        return out

    async def _drain(self, upstream: aiohttp.ClientResponse) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.draining.add(task)
        try:
            await _drain(upstream)
        finally:
            self.draining.discard(task)


class _HeldBack(_Body):
    """Everything up to the end of the stream in one piece (then the error it ended with)."""

    def __init__(self, upstream: aiohttp.ClientResponse) -> None:
        super().__init__(upstream)
        self.ended = False
        self.error: BaseException | None = None

    async def next(self) -> bytes:
        if self.ended:
            if self.error is not None:
                raise self.error
            return b""
        chunks: list[bytes] = []
        try:
            while chunk := await self.upstream.content.readany():
                chunks.append(chunk)
        except (aiohttp.ClientError, OSError) as exc:
            self.error = exc
        self.ended = True
        return b"".join(chunks) or await self.next()


class _SseBuffered(_StreamMutant):
    body = _HeldBack


# -- what counts as an auth failure ----------------------------------------------------------------


class _AnswersNotReplayed(Forwarder):
    async def _auth_failure(self, ex: Exchange, upstream: aiohttp.ClientResponse) -> str | None:
        # A POSTed JSON-RPC response (no method) goes back to the client as it came.
        if ex.request.method == "POST" and ex.body and ex.rpc_method() is None:
            return None
        return await super()._auth_failure(ex, upstream)


class _JsonBodyUnread(Forwarder):
    async def _auth_failure(self, ex: Exchange, upstream: aiohttp.ClientResponse) -> str | None:
        if upstream.status == 200 and upstream.content_type == "application/json":
            return None
        return await super()._auth_failure(ex, upstream)


class _SseUnpeeked(Forwarder):
    async def _auth_failure(self, ex: Exchange, upstream: aiohttp.ClientResponse) -> str | None:
        if upstream.status == 200 and upstream.content_type == _SSE:
            return None
        return await super()._auth_failure(ex, upstream)


class _RefreshOnStatus(Forwarder):
    status: ClassVar[int]

    async def _auth_failure(self, ex: Exchange, upstream: aiohttp.ClientResponse) -> str | None:
        if upstream.status == self.status:
            await self._read_into(ex, upstream)
            return str(self.status)
        return await super()._auth_failure(ex, upstream)


class _RefreshOn400(_RefreshOnStatus):
    status = 400


class _RefreshOn403(_RefreshOnStatus):
    status = 403


class _RefreshOn404(_RefreshOnStatus):
    status = 404


def _substring_matcher(message: Any) -> bool:
    return default_matcher(message) or "authentication_failed" in json.dumps(message)


# -- token sources -------------------------------------------------------------------------------


class _ExpiryIgnored(BaseTokenSource):
    def _expired(self) -> bool:
        return False


class _NoExpiryMeansExpired(BaseTokenSource):
    async def token(self) -> str:
        current = self.current
        if current is not None and self._expires_at is None and self.terminal_error is None:
            return await self.refresh(current)
        return await super().token()


class _InvalidGrantRetried(BaseTokenSource):
    def _forget(self) -> None:
        if self.terminal_error is not None:
            self.reset()

    async def token(self) -> str:
        self._forget()
        return await super().token()

    async def refresh(self, stale: str | None) -> str:
        self._forget()
        return await super().refresh(stale)


class _RefreshAfterReplay(BaseTokenSource):
    async def current_if_newer(self, stale: str) -> str | None:
        newer = await super().current_if_newer(stale)
        if newer is not None:
            return newer
        try:
            return await self.refresh(stale)
        except Exception:
            return None


class _NoSingleFlight(BaseTokenSource):
    async def refresh(self, stale: str | None) -> str:
        terminal = self.terminal_error
        if terminal is not None:
            raise terminal
        current = self.current
        if current is not None and current != stale and not self._expired():
            return current
        return await self._run_fetch(stale)


class _StreamLocked(BaseTokenSource):
    """Refreshes under the lock an open GET stream holds for as long as it is open."""

    stream_lock: asyncio.Lock

    async def refresh(self, stale: str | None) -> str:
        async with self.stream_lock:
            return await super().refresh(stale)


class _GetStreamHoldsLock(Forwarder):
    async def forward(self, ex: Exchange) -> web.StreamResponse:
        lock: asyncio.Lock | None = getattr(ex.target.source, "stream_lock", None)
        standalone = ex.request.method == "GET" and "Last-Event-ID" not in ex.request.headers
        if lock is None or not standalone:
            return await super().forward(ex)
        async with lock:
            return await super().forward(ex)


# -- one proxy class per mutant ----------------------------------------------------------------------


class NoUpstreamCancelProxy(_MutantProxy):
    forwarder = _NoUpstreamCancel

    async def stop(self) -> None:
        # A drain outlives its client: the server no longer knows it, so the proxy ends it.
        forwarder = self._forwarder
        if isinstance(forwarder, _NoUpstreamCancel) and forwarder.draining:
            for task in forwarder.draining:
                task.cancel()
            await asyncio.wait(forwarder.draining, timeout=1.0)
        await super().stop()


class SseBufferedProxy(_MutantProxy):
    forwarder = _SseBuffered


class StreamLeftOpenProxy(_MutantProxy):
    forwarder = _StreamLeftOpen


class CutEndsCleanlyProxy(_MutantProxy):
    forwarder = _CutEndsCleanly


class ReopenOnCutProxy(_MutantProxy):
    forwarder = _ReopenOnCut


class LastEventIdDroppedProxy(_MutantProxy):
    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if "Last-Event-ID" in request.headers:
            headers = CIMultiDict(request.headers)
            del headers["Last-Event-ID"]
            request = request.clone(headers=headers)
        return await super()._handle(request)


class TlsTrustIgnoredProxy(_MutantProxy):
    def register(
        self,
        name: str,
        upstream_url: str,
        token_source: TokenSource,
        *,
        ssl_context: Any = None,
        allow_insecure_http: bool = False,
    ) -> str:
        # Verified against the system's trust store, whatever CA the target was given.
        self._upstream_ssl = None
        return super().register(
            name, upstream_url, token_source, allow_insecure_http=allow_insecure_http
        )


class NoRebindingGuardProxy(_MutantProxy):
    def _check_caller(self, headers: CIMultiDictProxy[str]) -> None:
        return None


class OriginGuardSkippedProxy(_MutantProxy):
    # The Host check still runs; the Origin header is hidden from the guard (and still sent on).
    def _check_caller(self, headers: CIMultiDictProxy[str]) -> None:
        without_origin = CIMultiDict((k, v) for k, v in headers.items() if k.lower() != "origin")
        super()._check_caller(CIMultiDictProxy(without_origin))


class AnswersNotReplayedProxy(_MutantProxy):
    forwarder = _AnswersNotReplayed


class JsonBodyUnreadProxy(_MutantProxy):
    forwarder = _JsonBodyUnread


class SseUnpeekedProxy(_MutantProxy):
    forwarder = _SseUnpeeked


class MatcherIgnoredProxy(_MutantProxy):
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.matcher = default_matcher


class SubstringMatcherProxy(_MutantProxy):
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.matcher = _substring_matcher


class RefreshOn400Proxy(_MutantProxy):
    forwarder = _RefreshOn400


class RefreshOn403Proxy(_MutantProxy):
    forwarder = _RefreshOn403


class RefreshOn404Proxy(_MutantProxy):
    forwarder = _RefreshOn404


class _SourceMutantProxy(_MutantProxy):
    mixin: ClassVar[type[BaseTokenSource]]

    def mutate_source(self, source: TokenSource) -> None:
        _derive(source, self.mixin)


class ExpiryIgnoredProxy(_SourceMutantProxy):
    mixin = _ExpiryIgnored


class NoExpiryMeansExpiredProxy(_SourceMutantProxy):
    mixin = _NoExpiryMeansExpired


class InvalidGrantRetriedProxy(_SourceMutantProxy):
    mixin = _InvalidGrantRetried


class RefreshAfterReplayProxy(_SourceMutantProxy):
    mixin = _RefreshAfterReplay


class NoSingleFlightProxy(_SourceMutantProxy):
    mixin = _NoSingleFlight


class GetStreamBlocksRefreshProxy(_SourceMutantProxy):
    mixin = _StreamLocked
    forwarder = _GetStreamHoldsLock

    def mutate_source(self, source: TokenSource) -> None:
        super().mutate_source(source)
        source.stream_lock = asyncio.Lock()  # type: ignore[attr-defined]


class GraceIgnoredProxy(_MutantProxy):
    def mutate_source(self, source: TokenSource) -> None:
        if isinstance(source, RefreshTokenSource):
            source.refresh_grace = 0.0


class LostGrantResentProxy(_MutantProxy):
    def mutate_source(self, source: TokenSource) -> None:
        if isinstance(source, RefreshTokenSource):
            # A grant whose answer was lost goes out again however long ago it was sent.
            source.refresh_grace = math.inf


class TokenErrorsNotRetriedProxy(_MutantProxy):
    def mutate_source(self, source: TokenSource) -> None:
        if isinstance(source, RefreshTokenSource):
            source.max_retries = 0
