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

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from freshtoken.proxy import Proxy
from freshtoken.scenarios._applicability import SubjectProfile
from freshtoken.scenarios._client import McpClient
from freshtoken.scenarios._harness import DEFAULT_TARGET
from freshtoken.scenarios._mutated import (
    AnswersNotReplayedProxy,
    CutEndsCleanlyProxy,
    ExpiryIgnoredProxy,
    GetStreamBlocksRefreshProxy,
    GraceIgnoredProxy,
    InvalidGrantRetriedProxy,
    JsonBodyUnreadProxy,
    LastEventIdDroppedProxy,
    LostGrantResentProxy,
    MatcherIgnoredProxy,
    NoExpiryMeansExpiredProxy,
    NoRebindingGuardProxy,
    NoSingleFlightProxy,
    NoUpstreamCancelProxy,
    OriginGuardSkippedProxy,
    RefreshAfterReplayProxy,
    RefreshOn400Proxy,
    RefreshOn403Proxy,
    RefreshOn404Proxy,
    ReopenOnCutProxy,
    SseBufferedProxy,
    SseUnpeekedProxy,
    StreamLeftOpenProxy,
    SubstringMatcherProxy,
    TlsTrustIgnoredProxy,
    TokenErrorsNotRetriedProxy,
)
from freshtoken.scenarios._session import ClientSession, Environment, SubjectSession

__all__ = ["MUTANT_PREFIX", "Mutant", "MutantSubject", "mutant_subjects", "mutants"]

MUTANT_PREFIX = "mutant:"
"""A mutant's subject name is this prefix and the mutant's name."""


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
        NoUpstreamCancelProxy,
        ("client-disconnect-cancels-upstream",),
    ),
    Mutant(
        "sse-buffered",
        "an SSE response is held back until it ends (all but the first event, which the auth "
        "check reads)",
        SseBufferedProxy,
        ("rotation-while-streaming",),
    ),
    Mutant(
        "stream-left-open",
        "when the upstream's event stream ends or breaks, the client response is left open",
        StreamLeftOpenProxy,
        ("upstream-dies-mid-stream", "stateless-stream-cut"),
    ),
    Mutant(
        "cut-ends-cleanly",
        "an upstream event stream that breaks ends the client response as if it were complete",
        CutEndsCleanlyProxy,
        ("upstream-dies-mid-stream",),
    ),
    Mutant(
        "last-event-id-dropped",
        "Last-Event-ID is not forwarded, so a resumption starts a new stream",
        LastEventIdDroppedProxy,
        ("sse-cut-resumed-with-last-event-id",),
    ),
    Mutant(
        "reopen-on-cut",
        "a POST stream that ends without its response is sent again (the tool runs twice) "
        "instead of being left to the client to resume",
        ReopenOnCutProxy,
        ("sse-cut-resumed-with-last-event-id", "stateless-stream-cut"),
    ),
    Mutant(
        "expiry-ignored",
        "a reported expires_in is ignored: the expired token is sent and refused before a refresh",
        ExpiryIgnoredProxy,
        ("expiry-by-clock-with-expires-in",),
    ),
    Mutant(
        "no-expiry-means-expired",
        "a token issued without expires_in counts as expired: every request spends a grant",
        NoExpiryMeansExpiredProxy,
        ("expiry-by-clock-without-expires-in",),
    ),
    Mutant(
        "tls-trust-ignored",
        "the CA given for an HTTPS upstream is ignored (the system's trust store is used)",
        TlsTrustIgnoredProxy,
        ("seed-over-tls",),
    ),
    Mutant(
        "no-rebinding-guard",
        "requests with a foreign Host or Origin are forwarded",
        NoRebindingGuardProxy,
        ("dns-rebinding-refused",),
    ),
    Mutant(
        "origin-guard-skipped",
        "requests with a foreign Origin are forwarded (the Host check still runs)",
        OriginGuardSkippedProxy,
        ("dns-rebinding-refused",),
    ),
    Mutant(
        "answers-not-replayed",
        "a POSTed answer to a server request (sampling, elicitation) is not refreshed and "
        "replayed on an auth failure",
        AnswersNotReplayedProxy,
        ("sampling-answer-meets-rotation", "elicitation-answer-meets-rotation"),
    ),
    Mutant(
        "json-body-unread",
        "a 200 JSON body is never read for an auth failure",
        JsonBodyUnreadProxy,
        ("auth-failure-200-jsonrpc", "auth-failure-posthog-shape", "auth-failure-tool-error"),
    ),
    Mutant(
        "sse-unpeeked",
        "the first event of a 200 event stream is never read for an auth failure",
        SseUnpeekedProxy,
        ("auth-failure-first-sse-event",),
    ),
    Mutant(
        "matcher-ignored",
        "the configured auth-failure matcher is ignored (the default one is used)",
        MatcherIgnoredProxy,
        ("auth-failure-tool-error",),
    ),
    Mutant(
        "substring-matcher",
        'any body that contains "authentication_failed" counts as an auth failure',
        SubstringMatcherProxy,
        ("substring-in-result-is-not-auth-failure",),
    ),
    Mutant(
        "refresh-on-400",
        "a 400 counts as an auth failure (refresh and replay)",
        RefreshOn400Proxy,
        ("expired-token-400-no-loop",),
    ),
    Mutant(
        "refresh-on-403",
        "a 403 counts as an auth failure (refresh and replay), insufficient_scope included",
        RefreshOn403Proxy,
        ("insufficient-scope-403-passes-through",),
    ),
    Mutant(
        "refresh-on-404",
        "a 404 (session gone) counts as an auth failure (refresh and replay)",
        RefreshOn404Proxy,
        ("session-404-reinitialize",),
    ),
    Mutant(
        "refresh-after-replay",
        "a replay that fails too refreshes again (up to four sends), not back to the client",
        RefreshAfterReplayProxy,
        ("persistent-401-retry-once",),
    ),
    Mutant(
        "invalid-grant-retried",
        "invalid_grant is not terminal: the next request tries the grant again",
        InvalidGrantRetriedProxy,
        ("invalid-grant-terminal", "replayed-refresh-token-revokes-family"),
    ),
    Mutant(
        "no-single-flight",
        "each request that needs a new token fetches its own (no single flight)",
        NoSingleFlightProxy,
        ("concurrent-401s-single-refresh", "concurrent-expiry-at-once"),
    ),
    Mutant(
        "get-stream-blocks-refresh",
        "an open GET stream holds the token source's lock, so a refresh waits for it to end",
        GetStreamBlocksRefreshProxy,
        ("posts-not-blocked-by-get-stream", "get-stream-headers-held-back"),
    ),
    Mutant(
        "grace-ignored",
        "the authorization server's grace window is ignored: a lost grant is never resent",
        GraceIgnoredProxy,
        ("lost-token-response-grace-window",),
    ),
    Mutant(
        "lost-grant-resent",
        "a refresh grant whose answer was lost is sent again, however long ago",
        LostGrantResentProxy,
        ("lost-token-response-no-grace",),
    ),
    Mutant(
        "token-errors-not-retried",
        "a token endpoint 5xx is not retried",
        TokenErrorsNotRetriedProxy,
        ("token-endpoint-5xx-recovers",),
    ),
)


def mutants() -> tuple[Mutant, ...]:
    """Every targeted mutant, in catalogue order of the behaviour it breaks."""
    return _MUTANTS


# -- the subject ----------------------------------------------------------------------------------


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
        # Started as the harness starts the real proxy (the verdicts credit its answers to it).
        proxy = await env.harness.start_proxy(proxy_class=self.mutant.proxy)
        async with McpClient(
            proxy.local_url(DEFAULT_TARGET),
            timeline=env.timeline,
            protocol_version=env.scenario.setup.protocol_version,
        ) as client:
            yield ClientSession(client)


def mutant_subjects() -> dict[str, MutantSubject]:
    """Every mutant as a subject, by subject name (``mutant:<name>``)."""
    return {MUTANT_PREFIX + m.name: MutantSubject(m) for m in _MUTANTS}
