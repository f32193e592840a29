"""The login flow's OAuth client parts: bounded HTTP for JSON documents, dynamic client
registration (RFC 7591), token revocation (RFC 7009), the code exchange through the proxy's own
token-endpoint client, PKCE, and the loopback listener for the redirect (RFC 8252 §7.3) that
checks ``state`` and ``iss`` (RFC 9207). :class:`LoginError` carries which step failed.

Every request has a total deadline and a cap on what is read: a metadata document or a
registration answer is a few KiB, so an endpoint that drips or floods cannot hold the login
forever or fill memory. Text from a server reaches an error message only sanitized.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import json
import secrets
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from aiohttp import web

from freshtoken._errors import (
    FreshtokenError,
    GrantInDoubtError,
    InvalidGrantError,
    TokenSourceError,
)
from freshtoken._serve import LoopbackSite
from freshtoken.proxy._endpoint import OAuthTokenSource, apply_client_auth, sanitize_description
from freshtoken.proxy._grants import ClientCredentialsSource
from freshtoken.proxy._jwt import ClientKey
from freshtoken.proxy._store import StoredLogin
from freshtoken.proxy._tokens import FetchedToken, valid_refresh_token

__all__ = [
    "DEFAULT_DOCUMENT_BYTES",
    "ClientCredentialsCapture",
    "CodeExchange",
    "HttpAnswer",
    "LoginError",
    "LoginFailure",
    "RedirectListener",
    "Registered",
    "TokenCapture",
    "http_client",
    "obtain_tokens",
    "pkce",
    "register_client",
    "request",
    "revoke_token",
    "server_error",
    "with_query",
]

DEFAULT_DOCUMENT_BYTES: Final = 256 * 1024
"""The largest metadata document or registration answer read."""
_USER_AGENT: Final = "freshtoken-login"
CALLBACK_PATH: Final = "/callback"


class LoginFailure(IntEnum):
    """Why a login failed; the value is the exit code of ``freshtoken login`` (see
    :attr:`meaning`)."""

    FAILED = 1
    NO_AUTHORIZATION_SERVER = 3
    REGISTRATION_REFUSED = 4
    CONSENT_DENIED = 5
    RESPONSE_MISMATCH = 6
    REDIRECT_TIMEOUT = 7
    TOKEN_REFUSED = 8

    @property
    def meaning(self) -> str:
        """One line saying what this failure is."""
        return _MEANINGS[self]


_MEANINGS: Final = {
    LoginFailure.FAILED: "a server was unreachable or answered something unusable",
    LoginFailure.NO_AUTHORIZATION_SERVER: (
        "no usable authorization server found (or its metadata failed validation)"
    ),
    LoginFailure.REGISTRATION_REFUSED: (
        "no client identity: registration refused or unavailable, no client configured"
    ),
    LoginFailure.CONSENT_DENIED: (
        "authorization not granted: consent denied, an error from the server, or a server "
        "that wants a person in --headless mode"
    ),
    LoginFailure.RESPONSE_MISMATCH: "the redirect's state or iss did not match: refused",
    LoginFailure.REDIRECT_TIMEOUT: "no redirect reached the loopback listener in time",
    LoginFailure.TOKEN_REFUSED: "the token endpoint refused the code or the client credentials",
}


class LoginError(FreshtokenError):
    """A login step failed; :attr:`failure` says which (and is the command's exit code).

    The message is one line, safe to print: no token or secret, server text sanitized.
    """

    def __init__(self, failure: LoginFailure, message: str) -> None:
        super().__init__(message)
        self.failure = failure


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """One bounded HTTP exchange: status, headers and the (capped) body."""

    url: str
    status: int
    headers: httpx.Headers
    body: bytes

    def json_object(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None if it is not one."""
        try:
            value = json.loads(self.body)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


def http_client(verify: ssl.SSLContext | str | Path | bool, *, timeout: float) -> httpx.AsyncClient:
    """The client every login request goes through: ``timeout`` per network operation, no
    cookies kept between requests that do not need them, redirects not followed by default."""
    if isinstance(verify, Path | str) and not isinstance(verify, bool):
        verify = ssl.create_default_context(cafile=str(verify))
    return httpx.AsyncClient(
        verify=verify,
        timeout=timeout,
        headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"},
    )


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    deadline: float,
    limit: int = DEFAULT_DOCUMENT_BYTES,
    follow_redirects: bool = False,
    read_body: bool = True,
    **kwargs: Any,
) -> HttpAnswer:
    """One request within ``deadline`` seconds reading at most ``limit`` bytes of the answer
    (none with ``read_body=False``: the status and headers are all that is wanted).

    A connection failure, a timeout or an oversized answer is a :class:`LoginError`
    (``FAILED``) naming the URL and what happened.
    """
    try:
        async with asyncio.timeout(deadline):
            response = await client.send(
                client.build_request(method, url, **kwargs),
                stream=True,
                follow_redirects=follow_redirects,
            )
            try:
                body = await _read_capped(response, limit, url) if read_body else b""
            finally:
                await response.aclose()
    except TimeoutError:
        raise LoginError(
            LoginFailure.FAILED, f"{url}: no complete answer within {deadline:g} s"
        ) from None
    except httpx.TooManyRedirects:
        raise LoginError(LoginFailure.FAILED, f"{url}: too many redirects") from None
    except httpx.HTTPError as exc:
        raise LoginError(LoginFailure.FAILED, f"{url}: {_describe(exc)}") from None
    return HttpAnswer(str(response.url), response.status_code, response.headers, body)


async def _read_capped(response: httpx.Response, limit: int, url: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > limit:
            raise LoginError(LoginFailure.FAILED, f"{url}: answer larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _describe(exc: httpx.HTTPError) -> str:
    # The exception text of a TLS or socket failure is useful and holds no secret; keep one line.
    detail = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {sanitize_description(detail)}" if detail else type(exc).__name__


def server_error(answer: HttpAnswer, *, secrets: tuple[str | None, ...] = ()) -> str:
    """``HTTP <status>`` plus the RFC 6749 ``error``/``error_description`` if the body has them."""
    text = f"HTTP {answer.status}"
    body = answer.json_object()
    if body is not None and isinstance(body.get("error"), str):
        text += f" ({sanitize_description(body['error'], limit=64)}"
        description = body.get("error_description")
        if isinstance(description, str) and description:
            text += ": " + sanitize_description(description, secrets=secrets)
        text += ")"
    return text


# ---- RFC 7591 dynamic client registration --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registered:
    """What a registration endpoint issued."""

    client_id: str
    client_secret: str | None
    auth_method: str


async def register_client(
    client: httpx.AsyncClient,
    endpoint: str,
    *,
    redirect_uri: str,
    auth_method: str,
    scope: str | None,
    deadline: float,
    jwks: dict[str, Any] | None = None,
) -> Registered:
    """Register a client for the authorization-code grant with a loopback redirect.

    The answer decides the authentication method (``token_endpoint_auth_method``, else the one
    asked for); a method that needs a secret without one issued is refused. With ``jwks`` (a
    key's public half) the client registers for ``private_key_jwt`` and must get it.
    """
    metadata: dict[str, Any] = {
        "client_name": "freshtoken",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "private_key_jwt" if jwks is not None else auth_method,
    }
    if jwks is not None:
        metadata["jwks"] = jwks
    if scope:
        metadata["scope"] = scope
    answer = await request(
        client,
        "POST",
        endpoint,
        deadline=deadline,
        json=metadata,
        headers={"Accept": "application/json"},
    )
    if answer.status not in (200, 201):
        raise LoginError(
            LoginFailure.REGISTRATION_REFUSED,
            f"client registration at {endpoint} refused: {server_error(answer)}",
        )
    body = answer.json_object()
    client_id = body.get("client_id") if body is not None else None
    if not isinstance(client_id, str) or not client_id:
        raise LoginError(
            LoginFailure.REGISTRATION_REFUSED,
            f"client registration at {endpoint} answered without a client_id",
        )
    assert body is not None
    secret = body.get("client_secret")
    secret = secret if isinstance(secret, str) and secret else None
    method = body.get("token_endpoint_auth_method")
    method = (
        method if isinstance(method, str) and method else metadata["token_endpoint_auth_method"]
    )
    if jwks is not None:
        if method != "private_key_jwt":
            raise LoginError(
                LoginFailure.REGISTRATION_REFUSED,
                f"client registration at {endpoint} assigned "
                f"{sanitize_description(method, limit=64)!r} instead of private_key_jwt",
            )
        return Registered(client_id, None, method)
    if method not in ("client_secret_basic", "client_secret_post", "none"):
        raise LoginError(
            LoginFailure.REGISTRATION_REFUSED,
            f"client registration at {endpoint} assigned the unsupported client authentication "
            f"method {sanitize_description(method, limit=64)!r}",
        )
    if method != "none" and secret is None:
        raise LoginError(
            LoginFailure.REGISTRATION_REFUSED,
            f"client registration at {endpoint} assigned {method} but issued no client_secret",
        )
    return Registered(client_id, secret if method != "none" else None, method)


# ---- RFC 7009 revocation -----------------------------------------------------------------------


async def revoke_token(
    client: httpx.AsyncClient,
    endpoint: str,
    *,
    token: str,
    hint: str,
    client_id: str,
    client_secret: str | None,
    auth_method: str,
    deadline: float,
    client_key: ClientKey | None = None,
    audience: str | None = None,
) -> None:
    """Revoke ``token`` (RFC 7009 §2.1), authenticating as the token endpoint would.

    RFC 7009 §2.2: 200 means revoked or already invalid; anything else is a
    :class:`LoginError` (``FAILED``).
    """
    form = {"token": token, "token_type_hint": hint}
    headers = {"Accept": "application/json"}
    apply_client_auth(
        form,
        headers,
        client_id=client_id,
        client_secret=client_secret,
        auth_method=auth_method,
        client_key=client_key,
        audience=audience,
    )
    answer = await request(client, "POST", endpoint, deadline=deadline, data=form, headers=headers)
    if answer.status != 200:
        raise LoginError(
            LoginFailure.FAILED,
            f"revocation at {endpoint} failed: "
            f"{server_error(answer, secrets=(token, client_secret))}",
        )


# ---- the code exchange, through the proxy's own token-endpoint client ---------------------


class TokenCapture(OAuthTokenSource):
    """Keeps what the token response carried besides the access token."""

    refresh_token: str | None = None
    granted_scope: str | None = None
    fetched: FetchedToken | None = None

    async def _adopt(self, body: Mapping[str, Any], fetched: FetchedToken | None) -> None:
        refresh = body.get("refresh_token")
        if refresh is not None and not valid_refresh_token(refresh):
            raise TokenSourceError(
                f"token endpoint {self.token_endpoint} issued a refresh token outside RFC 6749 "
                "syntax; refused, not stored"
            )
        self.refresh_token = refresh
        scope = body.get("scope")
        self.granted_scope = scope if isinstance(scope, str) and scope else None
        self.fetched = fetched


class CodeExchange(TokenCapture):
    # An authorization code is single-use: an exchange whose answer was lost is never re-sent.
    _resend_is_safe = False

    def __init__(self, *, code: str, redirect_uri: str, verifier: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._code = code
        self._redirect_uri = redirect_uri
        self._verifier = verifier

    def _grant(self) -> dict[str, str]:
        return {
            "grant_type": "authorization_code",
            "code": self._code,
            "redirect_uri": self._redirect_uri,
            "code_verifier": self._verifier,
        }

    def _held_secrets(self) -> list[str | None]:
        return [*super()._held_secrets(), self._code, self._verifier]


class ClientCredentialsCapture(TokenCapture, ClientCredentialsSource):
    pass


async def obtain_tokens(source: TokenCapture, what: str) -> TokenCapture:
    try:
        await source.token()
    except GrantInDoubtError:
        raise LoginError(
            LoginFailure.FAILED,
            f"{what}: sent to {source.token_endpoint} but the answer was lost; log in again",
        ) from None
    except InvalidGrantError as exc:
        raise LoginError(LoginFailure.TOKEN_REFUSED, f"{what}: {exc}") from None
    except TokenSourceError as exc:
        raise LoginError(LoginFailure.FAILED, f"{what}: {exc}") from None
    finally:
        await source.aclose()
    return source


# ---- the redirect listener -------------------------------------------------------------


class RedirectListener:
    """A loopback HTTP listener for the one authorization response (RFC 8252 §7.3)."""

    def __init__(self, *, state: str, issuer: str, iss_required: bool, port: int) -> None:
        self._state = state
        self._issuer = issuer
        self._iss_required = iss_required
        self._port = port
        self._site: LoopbackSite | None = None
        self.result: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def start(self) -> str:
        self._site = LoopbackSite(self._handle, port=self._port)
        await self._site.start()
        return f"{self._site.url}{CALLBACK_PATH}"

    async def stop(self) -> None:
        if self._site is not None:
            await self._site.stop()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method != "GET" or request.path != CALLBACK_PATH:
            return web.Response(status=404, text="not found\n")
        if self.result.done():
            return _page(409, "This login is already finished; you can close this window.")
        try:
            code = self._check(request.query)
        except LoginError as exc:
            self.result.set_exception(exc)
            return _page(400, f"Login failed: {exc}")
        self.result.set_result(code)
        return _page(200, "Logged in. You can close this window and return to the terminal.")

    def _check(self, query: Mapping[str, str]) -> str:
        params: dict[str, str] = {}
        for name, value in query.items():
            if name in params:
                raise LoginError(
                    LoginFailure.RESPONSE_MISMATCH,
                    f"the redirect repeats the parameter {sanitize_description(name, limit=32)}; "
                    "refused",
                )
            params[name] = value
        state = params.get("state", "")
        if not hmac.compare_digest(state.encode(), self._state.encode()):
            raise LoginError(
                LoginFailure.RESPONSE_MISMATCH,
                "the redirect's state does not match this login (a forged or stale redirect); "
                "refused",
            )
        iss = params.get("iss")
        if iss is None and self._iss_required:
            raise LoginError(
                LoginFailure.RESPONSE_MISMATCH,
                f"the redirect has no iss though {self._issuer} promises one (RFC 9207); refused",
            )
        if iss is not None and iss.rstrip("/") != self._issuer.rstrip("/"):
            raise LoginError(
                LoginFailure.RESPONSE_MISMATCH,
                f"the redirect comes from issuer {sanitize_description(iss)}, not "
                f"{self._issuer} (RFC 9207 mix-up defence); refused",
            )
        error = params.get("error")
        if error is not None:
            reason = sanitize_description(error, limit=64)
            description = params.get("error_description")
            if description:
                reason += ": " + sanitize_description(description)
            raise LoginError(
                LoginFailure.CONSENT_DENIED, f"the authorization server refused: {reason}"
            )
        code = params.get("code")
        if not code:
            raise LoginError(LoginFailure.FAILED, "the redirect carries no authorization code")
        return code


def _page(status: int, text: str) -> web.Response:
    body = f"<!doctype html><title>freshtoken login</title><p>{html.escape(text)}</p>\n"
    return web.Response(
        status=status,
        text=body,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def pkce() -> tuple[str, str]:
    # RFC 7636 §4.1: 43..128 unreserved characters; 64 random bytes give 86.
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def stored_key(login: StoredLogin) -> ClientKey | None:
    """The key a ``private_key_jwt`` login authenticates with, read from the file it recorded
    (None for a login with a secret); a key that cannot be read is a :class:`LoginError`."""
    if login.auth_method != "private_key_jwt":
        return None
    if login.private_key_file is None or login.issuer is None:
        raise LoginError(
            LoginFailure.FAILED, "the login used private_key_jwt but recorded no key file or issuer"
        )
    try:
        return ClientKey.from_file(login.private_key_file, login.signing_alg)
    except ValueError as exc:
        raise LoginError(LoginFailure.FAILED, str(exc)) from None
