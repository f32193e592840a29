"""Token sources: where the proxy gets the bearer it sends on every hop.

Every built-in source derives from :class:`BaseTokenSource`, which owns the rules that make
refresh safe under concurrency: single-flight (one fetch at a time, everyone else waits for it)
and compare-and-swap on the stale token (a caller whose token was already replaced gets the
replacement without a new fetch). It also refuses, at the source, any token that could not be
sent safely: a token is kept, stored and sent only if it matches RFC 6750's ``b64token`` syntax.
The OAuth grants live in ``_grants.py``, the token-endpoint client they share in ``_endpoint.py``
and the refresh-token store in ``_store.py``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

from freshtoken._clock import Clock, SystemClock
from freshtoken._errors import InvalidGrantError, TokenSourceError
from freshtoken._timeline import Timeline, fingerprint

__all__ = [
    "BaseTokenSource",
    "CallableTokenSource",
    "CommandTokenSource",
    "FetchedToken",
    "StaticTokenSource",
    "TokenSource",
    "valid_access_token",
    "valid_refresh_token",
]

log = logging.getLogger("freshtoken.proxy")

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
# Anything else (a space, CR, LF, NUL, a quote, non-ASCII) could split or corrupt the header line
# it is sent in, or jam the target with a token no server can accept.
_B64TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# RFC 6749 Appendix A.17: refresh-token = 1*VSCHAR (printable ASCII, space included). A refresh
# token travels form-urlencoded in a body, so the wider syntax is safe; CR, LF and NUL are not in it.
_VSCHARS: Final = re.compile(r"[\x20-\x7e]+")


def valid_access_token(token: object) -> bool:
    """True if ``token`` is a string in RFC 6750's ``b64token`` syntax (safe in a header line)."""
    return isinstance(token, str) and _B64TOKEN.fullmatch(token) is not None


def valid_refresh_token(token: object) -> bool:
    """True if ``token`` is a string in RFC 6749's refresh-token syntax (``1*VSCHAR``)."""
    return isinstance(token, str) and _VSCHARS.fullmatch(token) is not None


@runtime_checkable
class TokenSource(Protocol):
    """What the proxy needs from a token source."""

    async def token(self) -> str:
        """The current access token (fetched the first time and when known to be expired)."""
        ...

    async def refresh(self, stale: str | None) -> str:
        """A token other than ``stale``: fetch one unless the current token already differs."""
        ...


@dataclass(frozen=True, slots=True)
class FetchedToken:
    """What one fetch produced: the access token and, when known, its lifetime in seconds."""

    access_token: str
    expires_in: float | None = None


class BaseTokenSource(ABC):
    """Single-flight, compare-and-swap refresh around one abstract :meth:`_fetch`.

    Subclasses implement ``_fetch()``. An :class:`~freshtoken.InvalidGrantError` from it is
    terminal: every later call raises it again without fetching until :meth:`reset`. A fetched
    token outside RFC 6750's ``b64token`` syntax is refused (a :class:`~freshtoken.TokenSourceError`):
    never kept, never handed out.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        timeline: Timeline | None = None,
        name: str | None = None,
    ) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.timeline = timeline
        self.name = name
        self._current: str | None = None
        self._expires_at: float | None = None
        self._inflight: asyncio.Future[str] | None = None
        self._terminal: InvalidGrantError | None = None
        self.fetches = 0

    @property
    def current(self) -> str | None:
        """The token last fetched (None before the first fetch)."""
        return self._current

    @property
    def terminal_error(self) -> InvalidGrantError | None:
        """The terminal error this source is stuck on, if any."""
        return self._terminal

    def reset(self) -> None:
        """Forget the current token and any terminal error (after reconfiguring the source)."""
        self._current = None
        self._expires_at = None
        self._terminal = None

    def _expired(self) -> bool:
        return self._expires_at is not None and self.clock.time() >= self._expires_at

    async def token(self) -> str:
        if self._terminal is not None:
            raise self._terminal
        current = self._current
        if current is not None and (self._expires_at is None or not self._expired()):
            return current
        return await self.refresh(current)

    async def refresh(self, stale: str | None) -> str:
        if self._terminal is not None:
            raise self._terminal
        current = self._current
        if current is not None and current != stale and not self._expired():
            return current
        inflight = self._inflight
        if inflight is None:
            # The fetch runs in its own task: a caller that is cancelled (its client went away)
            # must not cancel the refresh everyone else is waiting for.
            inflight = self._inflight = asyncio.ensure_future(self._run_fetch(stale))
            inflight.add_done_callback(_consume_exception)
        return await asyncio.shield(inflight)

    async def current_if_newer(self, stale: str) -> str | None:
        """A token newer than ``stale`` if one exists or is being fetched; never starts a fetch.

        This is how a caller whose replay failed with ``stale`` learns whether the token was
        replaced meanwhile without spending a grant: the current token if it differs from
        ``stale`` and has not expired; else, while a fetch someone else started is in flight,
        its result; else (or if that fetch fails, or the source is stuck on a terminal error)
        None.
        """
        if self._terminal is not None:
            return None
        current = self._current
        if current is not None and current != stale and not self._expired():
            return current
        inflight = self._inflight
        if inflight is None:
            return None
        try:
            fresh = await asyncio.shield(inflight)
        except Exception:
            return None
        return fresh if fresh != stale else None

    async def _run_fetch(self, stale: str | None) -> str:
        self._record("refresh.start", token=stale)
        try:
            fetched = await self._fetch()
            if not valid_access_token(fetched.access_token):
                raise TokenSourceError(
                    f"token source {self._label()} produced an access token outside RFC 6750 "
                    f"b64token syntax (fingerprint {fingerprint(fetched.access_token)}); "
                    "refused, not sent"
                )
        except InvalidGrantError as exc:
            self._terminal = exc
            self._record("refresh.failed", error=str(exc), terminal=True)
            # Info, not warning: whoever asked (the proxy, per request) reports the failure.
            log.info("token source %s is stuck: %s", self._label(), exc)
            raise
        except TokenSourceError as exc:
            self._record("refresh.failed", error=str(exc), terminal=False)
            log.info("token source %s failed: %s", self._label(), exc)
            raise
        except Exception as exc:
            self._record("refresh.failed", error=type(exc).__name__, terminal=False)
            raise TokenSourceError(
                f"token source {self._label()} failed: {type(exc).__name__}"
            ) from exc
        finally:
            self._inflight = None
        self.fetches += 1
        self._current = fetched.access_token
        self._expires_at = (
            None if fetched.expires_in is None else self.clock.time() + fetched.expires_in
        )
        self._record("refresh.done", token=fetched.access_token, expires_in=fetched.expires_in)
        log.debug(
            "token source %s refreshed: %s -> %s",
            self._label(),
            fingerprint(stale),
            fingerprint(fetched.access_token),
        )
        return fetched.access_token

    def _label(self) -> str:
        return self.name or type(self).__name__

    def _record(self, kind: str, *, token: str | None = None, **detail: Any) -> None:
        if self.timeline is not None:
            self.timeline.record("proxy", kind, token=token, source=self._label(), **detail)

    @abstractmethod
    async def _fetch(self) -> FetchedToken:
        """Obtain a new access token (never called concurrently for one source)."""

    async def aclose(self) -> None:
        """Stop a fetch still running (its waiters may all be gone: a command is killed, a
        request closed) and release resources; the source may not be used afterwards.
        Subclasses that hold more call this first."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None and not inflight.done():
            inflight.cancel()
            await asyncio.gather(inflight, return_exceptions=True)


def _consume_exception(future: asyncio.Future[str]) -> None:
    # Everyone awaiting the shared fetch may have been cancelled; the outcome is then unobserved.
    if not future.cancelled():
        future.exception()


class StaticTokenSource(BaseTokenSource):
    """A fixed token (refreshing returns the same token: a replay then gets the same answer).

    A token outside RFC 6750's ``b64token`` syntax is a :class:`ValueError` here, not a failure
    on first use.
    """

    def __init__(self, token: str, *, timeline: Timeline | None = None) -> None:
        if not valid_access_token(token):
            raise ValueError("the static token is not an RFC 6750 b64token")
        super().__init__(timeline=timeline)
        self._token = token

    async def _fetch(self) -> FetchedToken:
        return FetchedToken(self._token)


class CallableTokenSource(BaseTokenSource):
    """Tokens from an async function of the host app (like an ``authenticatedFetch`` helper).

    ``fetch()`` returns the current token; ``refresh()``, when given, is called for a
    force-refresh instead (so an app with its own cache can bypass it).
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[str]],
        *,
        refresh: Callable[[], Awaitable[str]] | None = None,
        timeline: Timeline | None = None,
    ) -> None:
        super().__init__(timeline=timeline)
        self._get = fetch
        self._force = refresh

    async def _fetch(self) -> FetchedToken:
        if self._current is not None and self._force is not None:
            return FetchedToken(await self._force())
        return FetchedToken(await self._get())


class CommandTokenSource(BaseTokenSource):
    """Runs ``argv`` for every fetch; its stdout (stripped) is the token.

    A non-zero exit, empty output, more than :data:`MAX_COMMAND_OUTPUT` bytes of output or a
    run longer than ``timeout`` seconds is a :class:`~freshtoken.TokenSourceError` (the
    command's output is never put in the message). The command never outlives the fetch: it is
    killed on a timeout, on too much output and when the fetch is cancelled.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        env: dict[str, str] | None = None,
        timeline: Timeline | None = None,
    ) -> None:
        if not argv:
            raise ValueError("CommandTokenSource needs a command")
        super().__init__(timeline=timeline, name=f"command:{Path(argv[0]).name}")
        self._argv = list(argv)
        self._timeout = timeout
        self._env = env

    async def _fetch(self) -> FetchedToken:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env=self._env,
            )
        except OSError as exc:
            raise TokenSourceError(f"{self._label()}: cannot run: {exc.strerror}") from exc
        try:
            async with asyncio.timeout(self._timeout):
                stdout = await _read_capped(proc, MAX_COMMAND_OUTPUT)
                if stdout is None:
                    raise TokenSourceError(
                        f"{self._label()}: printed more than {MAX_COMMAND_OUTPUT} bytes"
                    )
                await proc.wait()
        except TimeoutError:
            raise TokenSourceError(
                f"{self._label()}: no token within {self._timeout:g} s"
            ) from None
        finally:
            if proc.returncode is None:
                proc.kill()
                # Reaped even when the fetch was cancelled: no zombie outlives it.
                await asyncio.shield(proc.wait())
        if proc.returncode != 0:
            raise TokenSourceError(f"{self._label()}: exited with status {proc.returncode}")
        token = stdout.decode("utf-8", errors="replace").strip()
        if not token:
            raise TokenSourceError(f"{self._label()}: printed no token")
        return FetchedToken(token)


MAX_COMMAND_OUTPUT: Final = 64 * 1024
"""The most a token command may print (bytes); a bearer token is far smaller."""


async def _read_capped(proc: asyncio.subprocess.Process, limit: int) -> bytes | None:
    """All of ``proc``'s stdout, or ``None`` once it passes ``limit`` bytes."""
    assert proc.stdout is not None
    chunks: list[bytes] = []
    total = 0
    while chunk := await proc.stdout.read(65536):
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
