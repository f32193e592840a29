"""Targeted mutants: freshtoken's proxy with exactly one behaviour broken.

Each mutant is the real :class:`~freshtoken.proxy.Proxy` with one method of the proxy, of its
forwarder or of its token source overridden (or one setting forced), so that it fails the
catalogue scenarios named for the behaviour it breaks and passes the rest. That is how the
catalogue shows it tests what each scenario says: a scenario that only a client failing
everything (``baked-bearer``) fails would still pass on a proxy that broke its very property.

``freshtoken scenarios run --subject mutant:NAME`` runs the catalogue against one;
:func:`mutant_subjects` lists them. A mutant is judged as a token-injecting proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
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
from freshtoken.scenarios._applicability import SubjectProfile
from freshtoken.scenarios._client import McpClient
from freshtoken.scenarios._harness import DEFAULT_TARGET
from freshtoken.scenarios._session import Environment, Play, SubjectSession

__all__ = ["MUTANT_PREFIX", "Mutant", "MutantSubject", "mutant_subjects", "mutants"]

MUTANT_PREFIX = "mutant:"
"""A mutant's subject name is this prefix and the mutant's name."""

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


class _NoUpstreamCancelProxy(_MutantProxy):
    forwarder = _NoUpstreamCancel

    async def stop(self) -> None:
        # A drain outlives its client: the server no longer knows it, so the proxy ends it.
        forwarder = self._forwarder
        if isinstance(forwarder, _NoUpstreamCancel) and forwarder.draining:
            for task in forwarder.draining:
                task.cancel()
            await asyncio.wait(forwarder.draining, timeout=1.0)
        await super().stop()


class _SseBufferedProxy(_MutantProxy):
    forwarder = _SseBuffered


class _StreamLeftOpenProxy(_MutantProxy):
    forwarder = _StreamLeftOpen


class _CutEndsCleanlyProxy(_MutantProxy):
    forwarder = _CutEndsCleanly


class _ReopenOnCutProxy(_MutantProxy):
    forwarder = _ReopenOnCut


class _LastEventIdDroppedProxy(_MutantProxy):
    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if "Last-Event-ID" in request.headers:
            headers = CIMultiDict(request.headers)
            del headers["Last-Event-ID"]
            request = request.clone(headers=headers)
        return await super()._handle(request)


class _TlsTrustIgnoredProxy(_MutantProxy):
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


class _NoRebindingGuardProxy(_MutantProxy):
    def _check_caller(self, headers: CIMultiDictProxy[str]) -> None:
        return None


class _AnswersNotReplayedProxy(_MutantProxy):
    forwarder = _AnswersNotReplayed


class _JsonBodyUnreadProxy(_MutantProxy):
    forwarder = _JsonBodyUnread


class _SseUnpeekedProxy(_MutantProxy):
    forwarder = _SseUnpeeked


class _MatcherIgnoredProxy(_MutantProxy):
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.matcher = default_matcher


class _SubstringMatcherProxy(_MutantProxy):
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.matcher = _substring_matcher


class _RefreshOn400Proxy(_MutantProxy):
    forwarder = _RefreshOn400


class _RefreshOn403Proxy(_MutantProxy):
    forwarder = _RefreshOn403


class _RefreshOn404Proxy(_MutantProxy):
    forwarder = _RefreshOn404


class _SourceMutantProxy(_MutantProxy):
    mixin: ClassVar[type[BaseTokenSource]]

    def mutate_source(self, source: TokenSource) -> None:
        _derive(source, self.mixin)


class _ExpiryIgnoredProxy(_SourceMutantProxy):
    mixin = _ExpiryIgnored


class _NoExpiryMeansExpiredProxy(_SourceMutantProxy):
    mixin = _NoExpiryMeansExpired


class _InvalidGrantRetriedProxy(_SourceMutantProxy):
    mixin = _InvalidGrantRetried


class _RefreshAfterReplayProxy(_SourceMutantProxy):
    mixin = _RefreshAfterReplay


class _NoSingleFlightProxy(_SourceMutantProxy):
    mixin = _NoSingleFlight


class _GetStreamBlocksRefreshProxy(_SourceMutantProxy):
    mixin = _StreamLocked
    forwarder = _GetStreamHoldsLock

    def mutate_source(self, source: TokenSource) -> None:
        super().mutate_source(source)
        source.stream_lock = asyncio.Lock()  # type: ignore[attr-defined]


class _GraceIgnoredProxy(_MutantProxy):
    def mutate_source(self, source: TokenSource) -> None:
        if isinstance(source, RefreshTokenSource):
            source.refresh_grace = 0.0


class _LostGrantResentProxy(_MutantProxy):
    def mutate_source(self, source: TokenSource) -> None:
        if isinstance(source, RefreshTokenSource):
            # A grant whose answer was lost goes out again however long ago it was sent.
            source.refresh_grace = math.inf


class _TokenErrorsNotRetriedProxy(_MutantProxy):
    def mutate_source(self, source: TokenSource) -> None:
        if isinstance(source, RefreshTokenSource):
            source.max_retries = 0


# -- the catalogue of mutants -------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    """One targeted mutant: the behaviour it breaks (one line), the mutated proxy class, and the
    catalogue scenarios named for that behaviour (which must fail on it)."""

    name: str
    breaks: str
    proxy: type[Proxy]
    targets: tuple[str, ...]


_MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "no-upstream-cancel",
        "a client that goes away mid-stream leaves its upstream request running",
        _NoUpstreamCancelProxy,
        ("client-disconnect-cancels-upstream",),
    ),
    Mutant(
        "sse-buffered",
        "an SSE response is held back until it ends (all but the first event, which the auth "
        "check reads)",
        _SseBufferedProxy,
        ("rotation-while-streaming",),
    ),
    Mutant(
        "stream-left-open",
        "when the upstream's event stream ends or breaks, the client response is left open",
        _StreamLeftOpenProxy,
        ("upstream-dies-mid-stream", "stateless-stream-cut"),
    ),
    Mutant(
        "cut-ends-cleanly",
        "an upstream event stream that breaks ends the client response as if it were complete",
        _CutEndsCleanlyProxy,
        ("upstream-dies-mid-stream",),
    ),
    Mutant(
        "last-event-id-dropped",
        "Last-Event-ID is not forwarded, so a resumption starts a new stream",
        _LastEventIdDroppedProxy,
        ("sse-cut-resumed-with-last-event-id",),
    ),
    Mutant(
        "reopen-on-cut",
        "a POST stream that ends without its response is sent again (the tool runs twice) "
        "instead of being left to the client to resume",
        _ReopenOnCutProxy,
        ("sse-cut-resumed-with-last-event-id", "stateless-stream-cut"),
    ),
    Mutant(
        "expiry-ignored",
        "a reported expires_in is ignored: the expired token is sent and refused before a refresh",
        _ExpiryIgnoredProxy,
        ("expiry-by-clock-with-expires-in",),
    ),
    Mutant(
        "no-expiry-means-expired",
        "a token issued without expires_in counts as expired: every request spends a grant",
        _NoExpiryMeansExpiredProxy,
        ("expiry-by-clock-without-expires-in",),
    ),
    Mutant(
        "tls-trust-ignored",
        "the CA given for an HTTPS upstream is ignored (the system's trust store is used)",
        _TlsTrustIgnoredProxy,
        ("seed-over-tls",),
    ),
    Mutant(
        "no-rebinding-guard",
        "requests with a foreign Host or Origin are forwarded",
        _NoRebindingGuardProxy,
        ("dns-rebinding-refused",),
    ),
    Mutant(
        "answers-not-replayed",
        "a POSTed answer to a server request (sampling, elicitation) is not refreshed and "
        "replayed on an auth failure",
        _AnswersNotReplayedProxy,
        ("sampling-answer-meets-rotation", "elicitation-answer-meets-rotation"),
    ),
    Mutant(
        "json-body-unread",
        "a 200 JSON body is never read for an auth failure",
        _JsonBodyUnreadProxy,
        ("auth-failure-200-jsonrpc", "auth-failure-posthog-shape", "auth-failure-tool-error"),
    ),
    Mutant(
        "sse-unpeeked",
        "the first event of a 200 event stream is never read for an auth failure",
        _SseUnpeekedProxy,
        ("auth-failure-first-sse-event",),
    ),
    Mutant(
        "matcher-ignored",
        "the configured auth-failure matcher is ignored (the default one is used)",
        _MatcherIgnoredProxy,
        ("auth-failure-tool-error",),
    ),
    Mutant(
        "substring-matcher",
        'any body that contains "authentication_failed" counts as an auth failure',
        _SubstringMatcherProxy,
        ("substring-in-result-is-not-auth-failure",),
    ),
    Mutant(
        "refresh-on-400",
        "a 400 counts as an auth failure (refresh and replay)",
        _RefreshOn400Proxy,
        ("expired-token-400-no-loop",),
    ),
    Mutant(
        "refresh-on-403",
        "a 403 counts as an auth failure (refresh and replay), insufficient_scope included",
        _RefreshOn403Proxy,
        ("insufficient-scope-403-passes-through",),
    ),
    Mutant(
        "refresh-on-404",
        "a 404 (session gone) counts as an auth failure (refresh and replay)",
        _RefreshOn404Proxy,
        ("session-404-reinitialize",),
    ),
    Mutant(
        "refresh-after-replay",
        "a replay that fails too refreshes again (up to four sends), not back to the client",
        _RefreshAfterReplayProxy,
        ("persistent-401-retry-once",),
    ),
    Mutant(
        "invalid-grant-retried",
        "invalid_grant is not terminal: the next request tries the grant again",
        _InvalidGrantRetriedProxy,
        ("invalid-grant-terminal", "replayed-refresh-token-revokes-family"),
    ),
    Mutant(
        "no-single-flight",
        "each request that needs a new token fetches its own (no single flight)",
        _NoSingleFlightProxy,
        ("concurrent-401s-single-refresh", "concurrent-expiry-at-once"),
    ),
    Mutant(
        "get-stream-blocks-refresh",
        "an open GET stream holds the token source's lock, so a refresh waits for it to end",
        _GetStreamBlocksRefreshProxy,
        ("posts-not-blocked-by-get-stream", "get-stream-headers-held-back"),
    ),
    Mutant(
        "grace-ignored",
        "the authorization server's grace window is ignored: a lost grant is never resent",
        _GraceIgnoredProxy,
        ("lost-token-response-grace-window",),
    ),
    Mutant(
        "lost-grant-resent",
        "a refresh grant whose answer was lost is sent again, however long ago",
        _LostGrantResentProxy,
        ("lost-token-response-no-grace",),
    ),
    Mutant(
        "token-errors-not-retried",
        "a token endpoint 5xx is not retried",
        _TokenErrorsNotRetriedProxy,
        ("token-endpoint-5xx-recovers",),
    ),
)


def mutants() -> tuple[Mutant, ...]:
    """Every targeted mutant, in catalogue order of the behaviour it breaks."""
    return _MUTANTS


# -- the subject ----------------------------------------------------------------------------------


class _ClientSession:
    def __init__(self, client: McpClient) -> None:
        self.client = client

    async def play(self, play: Play) -> None:
        for index, step in enumerate(play.steps):
            if step.client_step:
                await play.client_step(index, self.client)
            else:
                await play.runner_step(index)


@dataclass(frozen=True)
class MutantSubject:
    """A mutant in front of the MCP server, started as the harness starts the real proxy; the
    client holds no token. Judged as a token-injecting proxy."""

    mutant: Mutant
    profile: SubjectProfile = field(default=SubjectProfile.of(["proxy"]))

    @property
    def name(self) -> str:
        return MUTANT_PREFIX + self.mutant.name

    @property
    def description(self) -> str:
        return f"freshtoken's proxy, except that {self.mutant.breaks}"

    @asynccontextmanager
    async def session(self, env: Environment) -> AsyncIterator[SubjectSession]:
        harness = env.harness
        proxy = await harness.adopt(self.mutant.proxy(**harness.proxy_options()))
        proxy.register(DEFAULT_TARGET, harness.mcp_server.url, harness.token_source())
        # As Harness.start_proxy would: the verdicts credit the proxy's own answers to it.
        harness.proxy = proxy
        async with McpClient(
            proxy.local_url(DEFAULT_TARGET),
            timeline=env.timeline,
            protocol_version=env.scenario.setup.protocol_version,
        ) as client:
            yield _ClientSession(client)


def mutant_subjects() -> dict[str, MutantSubject]:
    """Every mutant as a subject, by subject name (``mutant:<name>``)."""
    return {MUTANT_PREFIX + m.name: MutantSubject(m) for m in _MUTANTS}
