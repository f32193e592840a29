"""``freshtoken login``: the MCP authorization flow, ending in a store the proxy refreshes from.

:func:`login` discovers the authorization server (``_discovery.py``), settles the client
identity (a pre-registered client, a Client ID Metadata Document where the server supports
them, else RFC 7591 registration — remembered in the store and reused), runs the authorization
code grant with PKCE S256, ``state``, RFC 8707 ``resource`` and RFC 9207 ``iss`` through a
loopback redirect listener, exchanges the code through the same token-endpoint client the proxy
refreshes with (``_endpoint.py``), and writes the store atomically, 0600. :func:`login_status`
reads a store without printing a secret; :func:`logout` revokes (RFC 7009) and deletes.

Every wait is bounded: each request by a deadline, the redirect by ``redirect_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
import time
import webbrowser
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import httpx

from freshtoken._errors import TokenSourceError
from freshtoken._timeline import fingerprint
from freshtoken.proxy._discovery import AuthorizationServer, Discovery, discover
from freshtoken.proxy._endpoint import (
    DEFAULT_DEADLINE,
    DEFAULT_TIMEOUT,
    sanitize_description,
)
from freshtoken.proxy._jwt import ClientKey
from freshtoken.proxy._oauth_client import (
    ClientCredentialsCapture,
    CodeExchange,
    LoginError,
    LoginFailure,
    RedirectListener,
    TokenCapture,
    http_client,
    obtain_tokens,
    pkce,
    register_client,
    request,
    revoke_token,
    stored_key,
    with_query,
)
from freshtoken.proxy._store import AuthMethod, Grant, StoredLogin, StoredTokens, TokenStore

__all__ = [
    "LoginResult",
    "LoginTarget",
    "StoreStatus",
    "login",
    "login_status",
    "logout",
]

log = logging.getLogger("freshtoken.login")

Verify = ssl.SSLContext | str | Path | bool
OpenUrl = Callable[[str], Awaitable[object]]

DEFAULT_REDIRECT_TIMEOUT: Final = 300.0
# Preference when the client may choose: a confidential client's secret keeps a stolen
# authorization code useless without it; public clients only where nothing else is offered.
_METHOD_PREFERENCE: Final[tuple[AuthMethod, ...]] = (
    "client_secret_basic",
    "client_secret_post",
    "none",
)


@dataclass(frozen=True, slots=True)
class LoginTarget:
    """What to log in to, where to keep the result, and how to talk to the servers.

    ``client_id`` (with ``client_secret`` and ``auth_method``) is a pre-registered client;
    ``client_metadata_url`` the URL of a Client ID Metadata Document used as the client id
    where the authorization server supports them; without either, the client registers
    itself (RFC 7591). ``token_endpoint`` overrides the discovered one; ``scope`` the one the
    MCP spec would choose; ``resource`` the RFC 8707 resource. ``grant="client_credentials"``
    needs a pre-registered confidential client and no browser. A pre-registered client with a
    ``client_key`` authenticates with it (``private_key_jwt``; the key read from
    ``private_key_file``, which the store records) instead of a secret. ``server_verify`` and
    ``as_verify`` are the TLS trust for the MCP server and the authorization server (a CA file,
    an ``SSLContext``, or True for the system's). ``redirect_port`` fixes the loopback
    listener's port (0: any free port, or the one a remembered registration was made with).
    """

    url: str
    store: Path
    client_id: str | None = None
    client_secret: str | None = None
    auth_method: AuthMethod | None = None
    client_metadata_url: str | None = None
    token_endpoint: str | None = None
    scope: str | None = None
    resource: str | None = None
    grant: Grant = "authorization_code"
    server_verify: Verify = True
    as_verify: Verify = True
    allow_insecure_http: bool = False
    timeout: float = DEFAULT_TIMEOUT
    deadline: float = DEFAULT_DEADLINE
    redirect_port: int = 0
    client_key: ClientKey | None = None
    private_key_file: Path | None = None


@dataclass(frozen=True, slots=True)
class LoginResult:
    """What a login stored (tokens as fingerprints only)."""

    store: Path
    login: StoredLogin
    refresh_token: str | None
    """Fingerprint of the stored refresh token (None if the server issued none)."""
    access_token: str | None
    """Fingerprint of the stored access token."""
    expires_at: float | None

    def summary(self) -> str:
        """One line for a terminal: no token, no secret."""
        login = self.login
        parts = [
            f"logged in to {login.server_url}",
            f"client {login.client_id} ({login.registration}, {login.auth_method})",
            f"scope {login.scope or '(none)'}",
            f"refresh token {self.refresh_token or '(none issued)'}",
            f"access token {self.access_token} {_expiry(self.expires_at)}",
            f"saved to {self.store}",
        ]
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """What a store holds, for ``--status`` (tokens as fingerprints only)."""

    store: Path
    exists: bool
    login: StoredLogin | None = None
    refresh_token: str | None = None
    access_token: str | None = None
    expires_at: float | None = None
    error: str | None = None

    def summary(self) -> str:
        """One line: no token, no secret."""
        if self.error is not None:
            return f"{self.store}: {self.error}"
        if not self.exists:
            return f"{self.store}: not logged in"
        login = self.login
        head = (
            f"{login.server_url} client {login.client_id} ({login.registration}), "
            f"scope {login.scope or '(none)'}"
            if login is not None
            else "no login record"
        )
        access = (
            f"access token {self.access_token} {_expiry(self.expires_at)}"
            if self.access_token is not None
            else "no access token"
        )
        return f"{head}; refresh token {self.refresh_token or '(none)'}; {access}"


def _expiry(expires_at: float | None) -> str:
    if expires_at is None:
        return "(expiry unknown)"
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_at))
    left = expires_at - time.time()
    if left <= 0:
        return f"(expired {when})"
    return f"(expires {when}, in {_duration(left)})"


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return f"{int(seconds)} s"
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h"


# ---- the flow ----------------------------------------------------------------------------------


def _scope(target: LoginTarget, found: Discovery) -> str | None:
    scope = target.scope if target.scope is not None else found.scope
    supported = found.authorization_server.scopes_supported or ()
    # SEP-2207: ask for offline_access (a refresh token) exactly when the server lists it.
    if "offline_access" in supported and target.grant == "authorization_code":
        words = scope.split() if scope else []
        if "offline_access" not in words:
            scope = " ".join([*words, "offline_access"])
    return scope or None


@dataclass(frozen=True, slots=True)
class _Client:
    client_id: str
    client_secret: str | None
    auth_method: AuthMethod
    registration: Literal["pre-registered", "dynamic", "metadata-document", "fallback"]


def _configured_method(target: LoginTarget, server: AuthorizationServer) -> AuthMethod:
    if target.auth_method is not None:
        return target.auth_method
    if target.client_secret is None:
        return "none"
    for method in _METHOD_PREFERENCE[:2]:
        if method in server.auth_methods:
            return method
    return "client_secret_basic"


def _registration_method(server: AuthorizationServer) -> AuthMethod:
    for method in _METHOD_PREFERENCE:
        if method in server.auth_methods:
            return method
    offered = ", ".join(sanitize_description(m, limit=32) for m in server.auth_methods)
    raise LoginError(
        LoginFailure.REGISTRATION_REFUSED,
        f"the authorization server {server.issuer} authenticates clients only with {offered}, "
        "none of which freshtoken speaks (client_secret_basic, client_secret_post, none)",
    )


def _remembered(
    previous: StoredLogin | None, found: Discovery, target: LoginTarget
) -> StoredLogin | None:
    """A registration an earlier login made with this authorization server, to reuse."""
    if (
        previous is None
        or previous.registration != "dynamic"
        or previous.issuer != found.authorization_server.issuer
        or previous.redirect_uri is None
        or target.client_id is not None
        # A registration made with a key is only of use with that same key file, and one
        # made with a secret not at all once a key is given.
        or previous.private_key_file
        != (None if target.private_key_file is None else str(target.private_key_file))
    ):
        return None
    return previous


async def _bind_listener(
    make: Callable[[int], RedirectListener], remembered: StoredLogin | None, port: int
) -> tuple[RedirectListener, str, StoredLogin | None]:
    if remembered is not None and port == 0:
        # A remembered registration holds its exact redirect URI: listen there if we can.
        remembered_port = urlsplit(remembered.redirect_uri or "").port or 0
        listener = make(remembered_port)
        try:
            uri = await listener.start()
        except OSError:
            log.info("port %d is taken; registering a new client", remembered_port)
        else:
            return listener, uri, remembered
    listener = make(port)
    try:
        uri = await listener.start()
    except OSError as exc:
        raise LoginError(
            LoginFailure.FAILED, f"cannot listen for the redirect on port {port}: {exc.strerror}"
        ) from None
    remembered = remembered if remembered is not None and remembered.redirect_uri == uri else None
    return listener, uri, remembered


async def login(
    target: LoginTarget,
    *,
    mode: Literal["browser", "print", "headless"] = "browser",
    open_url: OpenUrl | None = None,
    redirect_timeout: float = DEFAULT_REDIRECT_TIMEOUT,
    announce: Callable[[str], None] | None = None,
) -> LoginResult:
    """Run the MCP authorization flow for ``target`` and write its store; see the module doc.

    ``mode``: open the system browser (``webbrowser``), only print the authorization URL, or
    ``headless`` — follow the authorization URL's redirects without a browser (for
    authorization servers that approve without a person). ``open_url`` replaces all three (an
    app's own way to show the URL). ``announce`` receives the lines meant for a person (the
    URL to open). Raises :class:`LoginError`, whose ``failure`` is the command's exit code.
    """
    say = announce if announce is not None else (lambda line: log.warning("%s", line))
    store = TokenStore(target.store)
    try:
        store.open()
    except TokenSourceError as exc:
        log.warning("%s; it will be replaced", exc)
    previous = store.login
    async with (
        http_client(target.server_verify, timeout=target.timeout) as server_http,
        http_client(target.as_verify, timeout=target.timeout) as as_http,
    ):
        found = await discover(
            target.url,
            server_http=server_http,
            as_http=as_http,
            deadline=target.deadline,
            allow_insecure_http=target.allow_insecure_http,
        )
        server = found.authorization_server
        log.info(
            "discovered %s: authorization server %s (metadata %s)",
            target.url,
            server.issuer,
            server.metadata_url or "2025-03-26 default endpoints",
        )
        resource = target.resource or found.resource
        scope = _scope(target, found)
        token_endpoint = target.token_endpoint or server.token_endpoint
        if target.grant == "client_credentials":
            return await _client_credentials(target, store, found, token_endpoint, resource, scope)
        state = secrets.token_urlsafe(32)
        iss_required = server.iss_parameter_supported

        def make(port: int) -> RedirectListener:
            return RedirectListener(
                state=state, issuer=server.issuer, iss_required=iss_required, port=port
            )

        remembered = _remembered(previous, found, target)
        listener, redirect_uri, remembered = await _bind_listener(
            make, remembered, target.redirect_port
        )
        try:
            client = await _client_identity(
                target, server, as_http, redirect_uri, remembered, scope, found
            )
            verifier, challenge = pkce()
            params = {
                "response_type": "code",
                "client_id": client.client_id,
                "redirect_uri": redirect_uri,
                "state": state,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "resource": resource,
            }
            if scope:
                params["scope"] = scope
            url = with_query(server.authorization_endpoint, params)
            code = await _await_redirect(
                listener, url, mode, open_url, as_http, target, redirect_timeout, say
            )
        finally:
            await listener.stop()
    exchange = CodeExchange(
        code=code,
        redirect_uri=redirect_uri,
        verifier=verifier,
        token_endpoint=token_endpoint,
        client_id=client.client_id,
        client_secret=client.client_secret,
        scope=None,
        resource=resource,
        clock=None,
        verify=target.as_verify,
        timeline=None,
        max_retries=2,
        timeout=target.timeout,
        deadline=target.deadline,
        max_response_bytes=1 << 20,
        max_retry_wait=10.0,
        auth_method=client.auth_method,
        allow_insecure_http=target.allow_insecure_http,
        client_key=target.client_key,
        issuer=server.issuer if target.client_key else None,
    )
    await obtain_tokens(exchange, "exchanging the authorization code")
    record = StoredLogin(
        server_url=target.url,
        token_endpoint=token_endpoint,
        client_id=client.client_id,
        client_secret=client.client_secret,
        auth_method=client.auth_method,
        resource=resource,
        scope=exchange.granted_scope or scope,
        grant="authorization_code",
        issuer=server.issuer,
        revocation_endpoint=server.revocation_endpoint,
        registration=client.registration,
        redirect_uri=redirect_uri,
        obtained_at=time.time(),
        **_key_record(target),
    )
    return _save(store, record, exchange)


async def _client_identity(
    target: LoginTarget,
    server: AuthorizationServer,
    as_http: httpx.AsyncClient,
    redirect_uri: str,
    remembered: StoredLogin | None,
    scope: str | None,
    found: Discovery,
) -> _Client:
    key = target.client_key
    if target.client_id is not None:
        method = "private_key_jwt" if key else _configured_method(target, server)
        return _Client(target.client_id, target.client_secret, method, "pre-registered")
    if remembered is not None:
        log.info("reusing client %s registered at an earlier login", remembered.client_id)
        return _Client(
            remembered.client_id, remembered.client_secret, remembered.auth_method, "dynamic"
        )
    if key is None and target.client_metadata_url and server.client_id_metadata_document_supported:
        return _Client(target.client_metadata_url, None, "none", "metadata-document")
    if server.registration_endpoint is None:
        raise LoginError(
            LoginFailure.REGISTRATION_REFUSED,
            f"the authorization server {server.issuer} offers no dynamic client registration "
            "and no client is configured: give a pre-registered client_id"
            + (
                ", or a client_metadata_url" if server.client_id_metadata_document_supported else ""
            ),
        )
    try:
        registered = await register_client(
            as_http,
            server.registration_endpoint,
            redirect_uri=redirect_uri,
            auth_method="private_key_jwt" if key else _registration_method(server),
            scope=None,
            deadline=target.deadline,
            jwks=key.public_jwks() if key else None,
        )
    except LoginError as exc:
        if server.metadata_url is None:
            # The 2025-03-26 default endpoints were a guess; a failing guess means no server.
            raise LoginError(
                LoginFailure.NO_AUTHORIZATION_SERVER,
                f"no authorization server found for {found.server_url}: no metadata, and the "
                f"default registration endpoint failed ({exc})",
            ) from None
        raise
    return _Client(
        registered.client_id,
        registered.client_secret,
        registered.auth_method,  # type: ignore[arg-type]  # checked by register_client
        "dynamic" if server.metadata_url is not None else "fallback",
    )


async def _await_redirect(
    listener: RedirectListener,
    url: str,
    mode: str,
    open_url: OpenUrl | None,
    as_http: httpx.AsyncClient,
    target: LoginTarget,
    redirect_timeout: float,
    say: Callable[[str], None],
) -> str:
    opener: OpenUrl
    if open_url is not None:
        opener = open_url
    elif mode == "headless":

        async def opener(authorize: str) -> None:
            await _follow_headless(authorize, as_http, target.deadline, listener)

    elif mode == "print":

        async def opener(authorize: str) -> None:
            say(f"Open this URL in a browser to authorize freshtoken:\n{authorize}")

    else:

        async def opener(authorize: str) -> None:
            say(
                f"Opening the browser to authorize freshtoken. If it does not open, visit:\n{authorize}"
            )
            await asyncio.to_thread(webbrowser.open, authorize)

    try:
        async with asyncio.timeout(redirect_timeout):
            opened: asyncio.Future[object] = asyncio.ensure_future(opener(url))
            try:
                waiting: set[asyncio.Future[Any]] = {opened, listener.result}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if opened.done() and not listener.result.done():
                    opened.result()  # the opener's own failure, if any
                return await listener.result
            finally:
                if not opened.done():
                    opened.cancel()
                    with contextlib.suppress(BaseException):
                        await opened
    except TimeoutError:
        raise LoginError(
            LoginFailure.REDIRECT_TIMEOUT,
            f"no redirect reached the loopback listener within {redirect_timeout:g} s",
        ) from None


async def _follow_headless(
    url: str, client: httpx.AsyncClient, deadline: float, listener: RedirectListener
) -> None:
    answer = await request(client, "GET", url, deadline=deadline, follow_redirects=True)
    if not listener.result.done():
        where = urlsplit(answer.url)._replace(query="", fragment="").geturl()
        raise LoginError(
            LoginFailure.CONSENT_DENIED,
            f"headless login: the authorization server answered HTTP {answer.status} at "
            f"{where} instead of redirecting back (it wants a person): run without --headless",
        )


async def _client_credentials(
    target: LoginTarget,
    store: TokenStore,
    found: Discovery,
    token_endpoint: str,
    resource: str,
    scope: str | None,
) -> LoginResult:
    key = target.client_key
    if target.client_id is None or (target.client_secret is None and key is None):
        raise LoginError(
            LoginFailure.REGISTRATION_REFUSED,
            "the client-credentials grant needs a pre-registered client_id and client_secret "
            "(or a private key)",
        )
    server = found.authorization_server
    method: AuthMethod = (
        "private_key_jwt" if key is not None else _configured_method(target, server)
    )
    source = ClientCredentialsCapture(
        token_endpoint,
        target.client_id,
        None if key is not None else target.client_secret,
        scope=scope,
        resource=resource,
        verify=target.as_verify,
        timeout=target.timeout,
        deadline=target.deadline,
        auth_method=method,
        allow_insecure_http=target.allow_insecure_http,
        client_key=key,
        issuer=server.issuer if key is not None else None,
    )
    await obtain_tokens(source, "the client-credentials grant")
    record = StoredLogin(
        server_url=target.url,
        token_endpoint=token_endpoint,
        client_id=target.client_id,
        client_secret=None if key is not None else target.client_secret,
        auth_method=method,
        resource=resource,
        scope=source.granted_scope or scope,
        grant="client_credentials",
        issuer=server.issuer,
        revocation_endpoint=server.revocation_endpoint,
        registration="pre-registered",
        obtained_at=time.time(),
        **_key_record(target),
    )
    return _save(store, record, source)


def _save(store: TokenStore, record: StoredLogin, source: TokenCapture) -> LoginResult:
    fetched = source.fetched
    assert fetched is not None
    expires_at = None if fetched.expires_in is None else time.time() + fetched.expires_in
    tokens = StoredTokens(source.refresh_token, fetched.access_token, expires_at)
    try:
        store.save_login(record, tokens)
    except OSError as exc:
        raise LoginError(
            LoginFailure.FAILED, f"cannot write the store {store.path}: {exc.strerror or exc}"
        ) from None
    return LoginResult(
        store=store.path,
        login=record,
        refresh_token=fingerprint(source.refresh_token),
        access_token=fingerprint(fetched.access_token),
        expires_at=expires_at,
    )


# ---- status and logout -------------------------------------------------------------------------


def login_status(store: str | Path) -> StoreStatus:
    """What the store at ``store`` holds (fingerprints only); a malformed store is reported in
    :attr:`StoreStatus.error`, not raised."""
    token_store = TokenStore(store)
    try:
        tokens = token_store.load()
    except TokenSourceError as exc:
        return StoreStatus(token_store.path, True, error=str(exc))
    if tokens is None and token_store.login is None:
        return StoreStatus(token_store.path, token_store.path.exists())
    return StoreStatus(
        token_store.path,
        True,
        login=token_store.login,
        refresh_token=fingerprint(tokens.refresh_token) if tokens else None,
        access_token=fingerprint(tokens.access_token) if tokens else None,
        expires_at=tokens.expires_at if tokens else None,
    )


async def logout(
    store: str | Path,
    *,
    verify: Verify = True,
    timeout: float = DEFAULT_TIMEOUT,
    deadline: float = DEFAULT_DEADLINE,
) -> bool:
    """Revoke the stored grant where the authorization server advertises RFC 7009 revocation
    (the refresh token, which revokes the grant; else the access token), then delete the store.

    Returns True if a token was revoked. The store is deleted even when revocation fails; the
    failure is then raised as a :class:`LoginError` (``FAILED``), since the tokens may still
    be live at the server.
    """
    token_store = TokenStore(store)
    try:
        tokens = token_store.load()
    except TokenSourceError:
        tokens = None
    login = token_store.login
    revoked = False
    failure: LoginError | None = None
    if tokens is not None and login is not None and login.revocation_endpoint is not None:
        token, hint = (
            (tokens.refresh_token, "refresh_token")
            if tokens.refresh_token is not None
            else (tokens.access_token, "access_token")
        )
        if token is not None:
            try:
                key = stored_key(login)
                async with http_client(verify, timeout=timeout) as client:
                    await revoke_token(
                        client,
                        login.revocation_endpoint,
                        token=token,
                        hint=hint,
                        client_id=login.client_id,
                        client_secret=login.client_secret,
                        auth_method=login.auth_method,
                        deadline=deadline,
                        client_key=key,
                        audience=login.issuer,
                    )
                revoked = True
            except LoginError as exc:
                failure = exc
    token_store.delete()
    if failure is not None:
        raise LoginError(
            LoginFailure.FAILED, f"{failure} (the store was deleted; the grant may still be live)"
        )
    return revoked


def _key_record(target: LoginTarget) -> dict[str, str | None]:
    key, path = target.client_key, target.private_key_file
    return {
        "private_key_file": None if path is None else str(path),
        "signing_alg": None if key is None else key.algorithm,
    }
