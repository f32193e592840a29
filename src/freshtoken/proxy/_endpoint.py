"""The token-endpoint client every OAuth grant source shares (``_grants.py`` has the grants).

What makes it safe against a misbehaving or hostile endpoint:

- **Retry only what provably was not processed.** A refresh grant that reached the endpoint may
  have rotated the refresh token; sending the old one again then looks like theft to an
  endpoint with reuse detection, which revokes the whole family. So only failures that prove the
  request was not processed are retried — no connection, the request not completely written, a
  5xx or 429 answer — with jittered, capped exponential backoff and ``Retry-After`` honoured up
  to a bound. A refresh grant whose outcome is unknown (read timeout, connection lost after the
  request was written, a 200 that is not a token response) is never sent again: the source stops
  with :class:`~freshtoken.GrantInDoubtError`. Grants go on a fresh connection each time, so a
  stale keep-alive connection can never make a lost connection ambiguous.
- **Every wait and every read is bounded:** per-operation timeouts, a total deadline per
  request (a response dripped a byte at a time cannot defeat per-read timeouts) and a cap on the
  response size (a huge response is never read whole).
- **Nothing from the endpoint is trusted into a header or a log:** tokens outside their RFC
  syntax are refused; ``error`` and ``error_description`` are sanitized (control characters
  escaped, length capped, held secrets redacted) before they reach an error message.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
import math
import random
import ssl
import time
import unicodedata
from abc import abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Final
from urllib.parse import quote_plus, urlsplit

import httpx

from freshtoken._clock import Clock
from freshtoken._errors import GrantInDoubtError, InvalidGrantError, TokenSourceError
from freshtoken._serve import is_loopback_host
from freshtoken._timeline import Timeline, fingerprint
from freshtoken.proxy._jwt import ASSERTION_TYPE, ClientKey
from freshtoken.proxy._tokens import BaseTokenSource, FetchedToken, valid_access_token

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_MAX_RETRY_WAIT",
    "DEFAULT_TIMEOUT",
    "OAuthTokenSource",
    "apply_client_auth",
    "sanitize_description",
]

log = logging.getLogger("freshtoken.proxy")

DEFAULT_TIMEOUT: Final = 10.0
"""Seconds for each network operation with the token endpoint (connect, write, each read)."""
DEFAULT_DEADLINE: Final = 30.0
"""Seconds for one whole token request, from connecting to the last byte of the answer."""
DEFAULT_MAX_RESPONSE_BYTES: Final = 1 << 20
"""The largest token response read (a token response is a few KiB at most)."""
DEFAULT_MAX_RETRIES: Final = 3
"""Retries of a token request that provably was not processed."""
DEFAULT_MAX_RETRY_WAIT: Final = 10.0
"""The longest ``Retry-After`` waited for; an endpoint asking for more fails the fetch at once."""

# RFC 6749 §5.2 / RFC 8707 errors that no retry can fix: the grant, the client or the
# configured scope/resource was refused, so only reconfiguring can help.
_TERMINAL_ERRORS: Final = frozenset(
    {
        "invalid_grant",
        "invalid_client",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_target",
    }
)
_AUTH_METHODS: Final = ("client_secret_basic", "client_secret_post", "none", "private_key_jwt")
_BACKOFF_BASE: Final = 0.25
_BACKOFF_CAP: Final = 5.0
_DESCRIPTION_LIMIT: Final = 200
_SHORT_ESCAPES: Final = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}
_ERROR_CODE_LIMIT: Final = 64
# Raised before a byte of the request can have reached the endpoint.
_UNSENT_ERRORS: Final = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
)


def sanitize_description(
    text: str, *, secrets: Iterable[str | None] = (), limit: int = _DESCRIPTION_LIMIT
) -> str:
    """``text`` from an authorization server made safe for an error message, a log line or a
    JSON-RPC error body: every occurrence of a held secret replaced by ``[redacted]``, control,
    format and line-separator characters escaped (``\\x1b``, ``\\u202e``), at most ``limit``
    characters.
    """
    for secret in secrets:
        # Very short values cannot be secrets worth hiding, and replacing them would shred the text.
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    escaped = "".join(_escape(char) for char in text)
    if len(escaped) > limit:
        escaped = escaped[: max(limit - 1, 0)] + "…"
    return escaped


def _escape(char: str) -> str:
    # Control and format characters (CR, LF, NUL, ESC, bidi overrides) and the Unicode line and
    # paragraph separators could forge log lines or disguise text; everything else stays.
    category = unicodedata.category(char)
    if category[0] != "C" and category not in ("Zl", "Zp"):
        return char
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


class _Failure(Exception):
    """One token request failed before producing an answer the grant logic can act on."""

    def __init__(self, what: str, retry_after: float | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.retry_after = retry_after


class _NotProcessed(_Failure):
    """The endpoint provably did not process the request: sending it again is safe."""


class _MaybeProcessed(_Failure):
    """The endpoint may have processed the request (and rotated a refresh token)."""


class OAuthTokenSource(BaseTokenSource):
    """A token source that gets its tokens from an OAuth token endpoint: client authentication,
    bounded requests, retries, RFC 6749 §5.2 errors. Subclasses give the grant's form fields and
    adopt what else a token response carries."""

    # Sending a grant again after an unknown outcome: harmless for client credentials (nothing
    # is consumed), fatal for a rotating refresh token.
    _resend_is_safe: ClassVar[bool] = True

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
        deadline: float,
        max_response_bytes: int,
        max_retry_wait: float,
        auth_method: str,
        allow_insecure_http: bool,
        client_key: ClientKey | None = None,
        issuer: str | None = None,
    ) -> None:
        super().__init__(clock=clock, timeline=timeline, name=f"oauth:{client_id}")
        if auth_method not in _AUTH_METHODS:
            raise ValueError(f"unknown auth_method {auth_method!r}")
        if (auth_method == "private_key_jwt") != (client_key is not None):
            raise ValueError("auth_method 'private_key_jwt' and a client_key go together")
        if client_key is not None and not issuer:
            raise ValueError(
                "private_key_jwt needs the authorization server's issuer (the audience)"
            )
        parts = urlsplit(token_endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"token_endpoint must be an http(s) URL, got {token_endpoint!r}")
        if (
            parts.scheme == "http"
            and not allow_insecure_http
            and not is_loopback_host(parts.hostname or "")
        ):
            raise ValueError(
                f"refusing to send client credentials and refresh tokens over plain http to "
                f"{parts.hostname}; use https, or allow_insecure_http=True"
            )
        _check_limits(
            max_retries=max_retries,
            timeout=timeout,
            deadline=deadline,
            max_response_bytes=max_response_bytes,
            max_retry_wait=max_retry_wait,
        )
        self.token_endpoint = token_endpoint
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope
        self.resource = resource
        self._verify: ssl.SSLContext | str | bool = (
            str(verify) if isinstance(verify, Path) else verify
        )
        self.max_retries = max_retries
        self.timeout = timeout
        self.deadline = deadline
        self.max_response_bytes = max_response_bytes
        self.max_retry_wait = max_retry_wait
        self._auth_method = auth_method
        self._client_key = client_key
        self.issuer = issuer
        self._http: httpx.AsyncClient | None = None
        self._random = random.Random()  # noqa: S311  # jitter, not a secret

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            verify = self._verify
            if isinstance(verify, str):
                verify = ssl.create_default_context(cafile=verify)
            self._http = httpx.AsyncClient(
                verify=verify,
                timeout=self.timeout,
                # No keep-alive: a grant on a reused connection that the server is closing fails
                # after being written, which would make a harmless race look like a lost grant.
                limits=httpx.Limits(max_keepalive_connections=0),
            )
        return self._http

    async def aclose(self) -> None:
        await super().aclose()
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    @abstractmethod
    def _grant(self) -> dict[str, str]:
        """The grant-specific form fields."""

    def _held_secrets(self) -> list[str | None]:
        """Values that must never appear in a message built from the endpoint's answer."""
        return [self._client_secret, self._current]

    async def _adopt(self, body: Mapping[str, Any], fetched: FetchedToken | None) -> None:
        """Take what else a token response carries (a rotated refresh token) before the access
        token is handed out; ``fetched`` is None when the access token was refused."""

    def _may_resend_in_doubt(self, sent_at: float) -> bool:
        """Whether a grant sent at ``sent_at`` whose outcome is unknown may go out once more."""
        return False

    async def _fetch(self) -> FetchedToken:
        attempt = 0
        resent = False
        while True:
            sent_at = self.clock.time()
            try:
                return await self._request_once()
            except _MaybeProcessed as exc:
                if not self._resend_is_safe and not resent and self._may_resend_in_doubt(sent_at):
                    # The endpoint still honours the old refresh token (its grace window), so
                    # sending it again is how a lost answer is recovered, once.
                    resent = True
                    self._record("refresh.resend", error=exc.what)
                    log.info("token source %s: %s; sent once more", self._label(), exc.what)
                    continue
                if not self._resend_is_safe:
                    raise GrantInDoubtError(
                        f"token endpoint {self.token_endpoint}: the refresh grant was sent but "
                        f"its outcome is unknown ({exc.what}); its refresh token may have been "
                        "rotated, so it is never sent again: authorize again or set a new "
                        "refresh token"
                    ) from None
                failure: _Failure = exc
            except _NotProcessed as exc:
                failure = exc
            attempt += 1
            if attempt > self.max_retries:
                raise TokenSourceError(
                    f"token endpoint {self.token_endpoint} unavailable after {attempt} "
                    f"attempts: {failure.what}"
                ) from None
            delay = self._backoff(attempt)
            if failure.retry_after is not None:
                if failure.retry_after > self.max_retry_wait:
                    raise TokenSourceError(
                        f"token endpoint {self.token_endpoint} unavailable ({failure.what}) and "
                        f"asks to retry after {failure.retry_after:g} s, more than "
                        f"max_retry_wait ({self.max_retry_wait:g} s)"
                    ) from None
                delay = max(delay, failure.retry_after)
            self._record("refresh.retry", attempt=attempt, error=failure.what, delay=delay)
            log.info(
                "token source %s: %s; retry %d in %.2f s",
                self._label(),
                failure.what,
                attempt,
                delay,
            )
            await self.clock.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        # "Equal jitter": half the capped exponential step, plus a random share of the other
        # half, so many proxies that failed together do not retry together.
        step: float = min(_BACKOFF_BASE * 2.0 ** (attempt - 1), _BACKOFF_CAP)
        return step / 2 + self._random.uniform(0, step / 2)

    def _form_and_headers(self) -> tuple[dict[str, str], dict[str, str]]:
        form = self._grant()
        if self.scope:
            form["scope"] = self.scope
        if self.resource:
            form["resource"] = self.resource
        # Identity: the size cap then bounds what is held in memory, not a compressed prefix.
        headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
        apply_client_auth(
            form,
            headers,
            client_id=self.client_id,
            client_secret=self._client_secret,
            auth_method=self._auth_method,
            client_key=self._client_key,
            audience=self.issuer,
            now=self.clock.time(),
        )
        return form, headers

    async def _request_once(self) -> FetchedToken:
        form, headers = self._form_and_headers()
        status, response_headers, raw = await self._post(form, headers)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        if status == 200:
            if not isinstance(body, dict):
                raise _MaybeProcessed("HTTP 200 without a JSON token response")
            return await self._accept(body)
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, str) and error in _TERMINAL_ERRORS:
            description = body.get("error_description") if isinstance(body, dict) else None
            reason = error
            if isinstance(description, str) and description:
                reason += ": " + sanitize_description(description, secrets=self._held_secrets())
            raise InvalidGrantError(
                f"token endpoint {self.token_endpoint} refused the grant ({reason})"
            )
        if status >= 500 or status == 429:
            retry_after = _retry_after(response_headers.get("Retry-After"), self.clock.time())
            raise _NotProcessed(f"HTTP {status}", retry_after)
        code = (
            f" ({sanitize_description(error, limit=_ERROR_CODE_LIMIT)})"
            if isinstance(error, str)
            else ""
        )
        raise TokenSourceError(f"token endpoint {self.token_endpoint} answered HTTP {status}{code}")

    async def _post(
        self, form: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, httpx.Headers, bytes]:
        """One bounded request: (status, headers, body), or a :class:`_Failure` saying whether
        the endpoint may have processed it."""
        traced = False
        written = False

        async def trace(event: str, info: Mapping[str, Any]) -> None:
            # httpcore reports each step of the exchange: once the request body is completely
            # written, the endpoint may process it whatever happens next.
            nonlocal traced, written
            traced = True
            if event.endswith("send_request_body.complete"):
                written = True

        client = self._client()
        request = client.build_request(
            "POST", self.token_endpoint, data=form, headers=headers, extensions={"trace": trace}
        )
        try:
            async with asyncio.timeout(self.deadline):
                response = await client.send(request, stream=True)
                try:
                    raw = await self._read_capped(response)
                finally:
                    await response.aclose()
        except TimeoutError:
            what = f"no complete answer within the {self.deadline:g} s deadline"
            raise self._failure(what, traced=traced, written=written) from None
        except _UNSENT_ERRORS as exc:
            raise _NotProcessed(type(exc).__name__) from None
        except httpx.HTTPError as exc:
            raise self._failure(type(exc).__name__, traced=traced, written=written) from None
        return response.status_code, response.headers, raw

    @staticmethod
    def _failure(what: str, *, traced: bool, written: bool) -> _Failure:
        # Without a trace (a mocked transport) nothing proves the request was not written.
        if traced and not written:
            return _NotProcessed(what)
        return _MaybeProcessed(what)

    async def _read_capped(self, response: httpx.Response) -> bytes:
        limit = self.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _MaybeProcessed(f"a response of {declared} bytes, over {limit}")
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.aiter_bytes():
            total += len(chunk)
            if total > limit:
                raise _MaybeProcessed(f"a response over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _accept(self, body: Mapping[str, Any]) -> FetchedToken:
        access = body.get("access_token")
        fetched = (
            FetchedToken(access, _lifetime(body.get("expires_in")))
            if isinstance(access, str) and valid_access_token(access)
            else None
        )
        await self._adopt(body, fetched)
        if fetched is None:
            if not isinstance(access, str) or not access:
                raise TokenSourceError(
                    f"token endpoint {self.token_endpoint} answered without an access_token"
                )
            raise TokenSourceError(
                f"token endpoint {self.token_endpoint} issued an access token outside RFC 6750 "
                f"b64token syntax (fingerprint {fingerprint(access)}); refused, not sent"
            )
        return fetched


def apply_client_auth(
    form: dict[str, str],
    headers: dict[str, str],
    *,
    client_id: str,
    client_secret: str | None,
    auth_method: str,
    client_key: ClientKey | None = None,
    audience: str | None = None,
    now: float | None = None,
) -> None:
    """Authenticate a request to the token (or revocation) endpoint as ``auth_method`` says:
    ``client_secret_basic``, ``client_secret_post``, ``private_key_jwt`` (a fresh assertion
    signed with ``client_key`` for ``audience``, the AS's issuer, at ``now``), or ``none`` (a
    public client names itself in the form; so does any client without a secret)."""
    if auth_method == "private_key_jwt":
        if client_key is None or not audience:
            raise ValueError("private_key_jwt needs a client_key and the issuer as audience")
        form["client_id"] = client_id
        form["client_assertion_type"] = ASSERTION_TYPE
        form["client_assertion"] = client_key.assertion(
            client_id=client_id, audience=audience, now=time.time() if now is None else now
        )
    elif client_secret is None or auth_method == "none":
        form["client_id"] = client_id
    elif auth_method == "client_secret_post":
        form["client_id"] = client_id
        form["client_secret"] = client_secret
    else:
        # RFC 6749 §2.3.1: id and secret are form-urlencoded *before* Basic encoding, so a
        # secret with ':', '+', '%' or '&' reaches the server as it was issued.
        credentials = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
        basic = base64.b64encode(credentials.encode("utf-8")).decode("ascii")
        headers["Authorization"] = f"Basic {basic}"


def _check_limits(
    *,
    max_retries: int,
    timeout: float,
    deadline: float,
    max_response_bytes: int,
    max_retry_wait: float,
) -> None:
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
    if (
        isinstance(max_response_bytes, bool)
        or not isinstance(max_response_bytes, int)
        or max_response_bytes < 1
    ):
        raise ValueError(f"max_response_bytes must be an integer >= 1, got {max_response_bytes!r}")
    for name, value, minimum in (
        ("timeout", timeout, 0.0),
        ("deadline", deadline, 0.0),
        ("max_retry_wait", max_retry_wait, -1.0),
    ):
        if not math.isfinite(value) or value <= minimum:
            bound = ">= 0" if minimum < 0 else "> 0"
            raise ValueError(f"{name} must be finite and {bound}, got {value!r}")


def _lifetime(expires_in: object) -> float | None:
    # Some servers send the number as a string; anything else unusable means "unknown".
    if isinstance(expires_in, str) and expires_in.isdigit():
        return float(expires_in)
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        value = float(expires_in)
        return value if math.isfinite(value) and value >= 0 else None
    return None


def _retry_after(value: str | None, now: float) -> float | None:
    """RFC 9110 §10.2.3: delay-seconds or an HTTP-date; None if absent or unusable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - now, 0.0)
