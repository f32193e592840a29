"""Token sources: where the proxy gets the bearer it sends on every hop.

Every built-in source derives from :class:`BaseTokenSource`, which owns the two rules that make
refresh safe under concurrency: single-flight (one fetch at a time, everyone else waits for it)
and compare-and-swap on the stale token (a caller whose token was already replaced gets the
replacement without a new fetch).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx

from freshtoken._clock import Clock, SystemClock
from freshtoken._errors import InvalidGrantError, TokenSourceError
from freshtoken._timeline import Timeline, fingerprint

__all__ = [
    "BaseTokenSource",
    "CallableTokenSource",
    "ClientCredentialsSource",
    "CommandTokenSource",
    "FetchedToken",
    "RefreshTokenSource",
    "StaticTokenSource",
    "TokenSource",
]

log = logging.getLogger("freshtoken.proxy")

# RFC 6749 §5.2 / RFC 8707 errors that no retry can fix: the grant, the client or the
# configured scope/resource was refused, so only reconfiguring can help.
_TERMINAL_ERRORS = frozenset(
    {
        "invalid_grant",
        "invalid_client",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_target",
    }
)


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
    terminal: every later call raises it again without fetching until :meth:`reset`.
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

    async def _run_fetch(self, stale: str | None) -> str:
        self._record("refresh.start", token=stale)
        try:
            fetched = await self._fetch()
        except InvalidGrantError as exc:
            self._terminal = exc
            self._record("refresh.failed", error=str(exc), terminal=True)
            raise
        except TokenSourceError as exc:
            self._record("refresh.failed", error=str(exc), terminal=False)
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

    async def aclose(self) -> None:  # noqa: B027  # most sources hold nothing to release
        """Release resources (HTTP clients); the source may not be used afterwards."""


def _consume_exception(future: asyncio.Future[str]) -> None:
    # Everyone awaiting the shared fetch may have been cancelled; the outcome is then unobserved.
    if not future.cancelled():
        future.exception()


class StaticTokenSource(BaseTokenSource):
    """A fixed token (refreshing returns the same token: a replay then gets the same answer)."""

    def __init__(self, token: str, *, timeline: Timeline | None = None) -> None:
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

    A non-zero exit, empty output or a run longer than ``timeout`` seconds is a
    :class:`~freshtoken.TokenSourceError` (the command's output is never put in the message).
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
                stdout, _ = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise TokenSourceError(
                f"{self._label()}: no token within {self._timeout:g} s"
            ) from None
        if proc.returncode != 0:
            raise TokenSourceError(f"{self._label()}: exited with status {proc.returncode}")
        token = stdout.decode("utf-8", errors="replace").strip()
        if not token:
            raise TokenSourceError(f"{self._label()}: printed no token")
        return FetchedToken(token)


class _OAuthTokenSource(BaseTokenSource):
    """Shared token-endpoint client: client authentication, retries, RFC 6749 §5.2 errors."""

    def __init__(
        self,
        *,
        token_endpoint: str,
        client_id: str,
        client_secret: str | None,
        scope: str | None,
        resource: str | None,
        clock: Clock | None,
        verify: ssl.SSLContext | str | Path | bool,
        timeline: Timeline | None,
        max_retries: int,
        timeout: float,
        auth_method: str,
    ) -> None:
        super().__init__(clock=clock, timeline=timeline, name=f"oauth:{client_id}")
        if auth_method not in ("client_secret_basic", "client_secret_post"):
            raise ValueError(f"unknown auth_method {auth_method!r}")
        self.token_endpoint = token_endpoint
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope
        self.resource = resource
        self._verify: ssl.SSLContext | str | bool = (
            str(verify) if isinstance(verify, Path) else verify
        )
        self.max_retries = max_retries
        self._timeout = timeout
        self._auth_method = auth_method
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            verify = self._verify
            if isinstance(verify, str):
                verify = ssl.create_default_context(cafile=verify)
            self._http = httpx.AsyncClient(verify=verify, timeout=self._timeout)
        return self._http

    async def aclose(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    @abstractmethod
    def _grant(self) -> dict[str, str]:
        """The grant-specific form fields."""

    def _adopt(self, body: dict[str, Any]) -> None:
        """Take whatever else the token response carries (a rotated refresh token)."""

    async def _fetch(self) -> FetchedToken:
        attempt = 0
        while True:
            try:
                return await self._request_once()
            except _TransientError as exc:
                attempt += 1
                if attempt > self.max_retries:
                    raise TokenSourceError(
                        f"token endpoint {self.token_endpoint} unavailable after "
                        f"{attempt} attempts: {exc}"
                    ) from None
                self._record("refresh.retry", attempt=attempt, error=str(exc))
                await self.clock.sleep(min(0.25 * 2 ** (attempt - 1), 5.0))

    async def _request_once(self) -> FetchedToken:
        form = self._grant()
        if self.scope:
            form["scope"] = self.scope
        if self.resource:
            form["resource"] = self.resource
        auth: tuple[str, str] | None = None
        if self._client_secret is None:
            form["client_id"] = self.client_id
        elif self._auth_method == "client_secret_post":
            form["client_id"] = self.client_id
            form["client_secret"] = self._client_secret
        else:
            auth = (self.client_id, self._client_secret)
        try:
            response = await self._client().post(
                self.token_endpoint,
                data=form,
                auth=auth,  # type: ignore[arg-type]  # None means "no auth" at runtime
                headers={"Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise _TransientError(type(exc).__name__) from exc
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if status == 200 and isinstance(body, dict):
            access = body.get("access_token")
            if not isinstance(access, str) or not access:
                raise _TransientError("token response without access_token")
            expires_in = body.get("expires_in")
            self._adopt(body)
            lifetime = (
                float(expires_in)
                if isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
                else None
            )
            return FetchedToken(access, lifetime)
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, str) and error in _TERMINAL_ERRORS:
            description = body.get("error_description") if isinstance(body, dict) else None
            reason = error if not isinstance(description, str) else f"{error}: {description}"
            raise InvalidGrantError(
                f"token endpoint {self.token_endpoint} refused the grant ({reason})"
            )
        if status >= 500 or status == 429 or status == 200:
            raise _TransientError(f"HTTP {status}")
        raise TokenSourceError(
            f"token endpoint {self.token_endpoint} answered HTTP {status}"
            + (f" ({error})" if isinstance(error, str) else "")
        )


class _TransientError(Exception):
    pass


class RefreshTokenSource(_OAuthTokenSource):
    """The OAuth refresh-token grant (RFC 6749 §6) with RFC 8707 ``resource``.

    Rotated refresh tokens are adopted and, with ``store``, persisted atomically (a 0600 temp file
    renamed over the store) together with the access token and its expiry, so a restart resumes
    with the newest refresh token and does not send an access token it knows has expired.
    ``invalid_grant``/``invalid_client`` are terminal (:class:`~freshtoken.InvalidGrantError`);
    5xx, 429 and network errors are retried ``max_retries`` times with capped exponential
    backoff on ``clock``.

    ``access_token`` (with ``expires_at`` on ``clock``, when known) seeds the source with the
    access token issued alongside ``refresh_token``, so the first request spends no grant; a
    ``store`` that already holds a token pair takes precedence, being newer.
    """

    def __init__(
        self,
        token_endpoint: str,
        client_id: str,
        client_secret: str | None = None,
        *,
        refresh_token: str | None = None,
        access_token: str | None = None,
        expires_at: float | None = None,
        resource: str | None = None,
        scope: str | None = None,
        store: str | Path | None = None,
        clock: Clock | None = None,
        verify: ssl.SSLContext | str | Path | bool = True,
        timeline: Timeline | None = None,
        max_retries: int = 3,
        timeout: float = 10.0,
        auth_method: str = "client_secret_basic",
    ) -> None:
        super().__init__(
            token_endpoint=token_endpoint,
            client_id=client_id,
            client_secret=client_secret,
            scope=scope,
            resource=resource,
            clock=clock,
            verify=verify,
            timeline=timeline,
            max_retries=max_retries,
            timeout=timeout,
            auth_method=auth_method,
        )
        self.store = Path(store) if store is not None else None
        self._refresh_token = refresh_token
        self._current = access_token
        self._expires_at = expires_at if access_token is not None else None
        if self.store is not None and self.store.exists():
            self._load()
        if self._refresh_token is None:
            raise ValueError("RefreshTokenSource needs refresh_token or a store holding one")

    @property
    def refresh_token_fingerprint(self) -> str | None:
        """Fingerprint of the refresh token the next fetch will present."""
        return fingerprint(self._refresh_token)

    def set_refresh_token(self, refresh_token: str) -> None:
        """Reconfigure with a new refresh token; clears a terminal error."""
        self.reset()
        self._refresh_token = refresh_token
        self._save()

    def _grant(self) -> dict[str, str]:
        assert self._refresh_token is not None
        return {"grant_type": "refresh_token", "refresh_token": self._refresh_token}

    def _adopt(self, body: dict[str, Any]) -> None:
        rotated = body.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != self._refresh_token:
            self._refresh_token = rotated
            self._record("refresh.rotated", refresh=fingerprint(rotated))

    async def _fetch(self) -> FetchedToken:
        fetched = await super()._fetch()
        if self.store is not None:
            expires_at = (
                None if fetched.expires_in is None else self.clock.time() + fetched.expires_in
            )
            self._save(fetched.access_token, expires_at)
        return fetched

    def _load(self) -> None:
        assert self.store is not None
        try:
            data = json.loads(self.store.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TokenSourceError(f"token store {self.store} is unreadable: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("refresh_token"), str):
            raise TokenSourceError(f"token store {self.store} has no refresh_token")
        self._refresh_token = data["refresh_token"]
        access, expires_at = data.get("access_token"), data.get("expires_at")
        if isinstance(access, str) and access:
            self._current = access
            self._expires_at = float(expires_at) if isinstance(expires_at, int | float) else None

    def _save(self, access: str | None = None, expires_at: float | None = None) -> None:
        if self.store is None:
            return
        payload: dict[str, Any] = {"refresh_token": self._refresh_token}
        if access is not None:
            payload["access_token"] = access
            payload["expires_at"] = expires_at
        _write_private_atomically(self.store, json.dumps(payload))


def _write_private_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600, so the secret is never readable by others, even briefly.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class ClientCredentialsSource(_OAuthTokenSource):
    """The OAuth client-credentials grant (RFC 6749 §4.4), same retry and error rules."""

    def __init__(
        self,
        token_endpoint: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        resource: str | None = None,
        clock: Clock | None = None,
        verify: ssl.SSLContext | str | Path | bool = True,
        timeline: Timeline | None = None,
        max_retries: int = 3,
        timeout: float = 10.0,
        auth_method: str = "client_secret_basic",
    ) -> None:
        super().__init__(
            token_endpoint=token_endpoint,
            client_id=client_id,
            client_secret=client_secret,
            scope=scope,
            resource=resource,
            clock=clock,
            verify=verify,
            timeline=timeline,
            max_retries=max_retries,
            timeout=timeout,
            auth_method=auth_method,
        )

    def _grant(self) -> dict[str, str]:
        return {"grant_type": "client_credentials"}
