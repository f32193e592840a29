"""MCP authorization discovery: from an MCP server's URL to its authorization server.

The order is the MCP authorization spec's (2025-06-18 and later), with its 2025-03-26 fallbacks:

1. Ask the server without a token. Its 401 names the protected-resource metadata in
   ``WWW-Authenticate: Bearer resource_metadata=...`` (RFC 9728 §5.1), and maybe the ``scope``
   it wants. A server that lets ``initialize`` through unauthenticated is asked once more
   (``tools/list``), where its challenge then comes.
2. RFC 9728 metadata: the URL from the challenge, else the well-known path suffixed with the
   server's path, else the well-known path at the root. Its ``resource`` must be this server
   (same origin, a path prefix): metadata for another resource is refused, never used.
3. RFC 8414 metadata of the first listed authorization server, at the well-known paths the MCP
   spec lists (OAuth, then OpenID Connect discovery; path-inserted for an issuer with a path,
   plus OpenID's appended form). Its ``issuer`` must be the one asked for (RFC 8414 §3.3, against
   mix-up attacks), and it must support PKCE S256.
4. No protected-resource metadata at all (a 2025-03-26 server): the server's origin is the
   authorization server; its RFC 8414 metadata, else the default ``/authorize``, ``/token`` and
   ``/register`` endpoints there.

The scope follows the MCP spec: the challenge's ``scope``, else the metadata's
``scopes_supported``, else none.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit
from urllib.request import parse_http_list

import httpx

from freshtoken import __version__
from freshtoken._serve import is_loopback_host
from freshtoken.proxy._endpoint import sanitize_description
from freshtoken.proxy._oauth_client import (
    HttpAnswer,
    LoginError,
    LoginFailure,
    request,
)

__all__ = [
    "AuthorizationServer",
    "Challenge",
    "Discovery",
    "discover",
    "parse_challenges",
    "resource_matches",
]

log = logging.getLogger("freshtoken.login")

_PRM: Final = "/.well-known/oauth-protected-resource"
_OAUTH: Final = "/.well-known/oauth-authorization-server"
_OPENID: Final = "/.well-known/openid-configuration"
_JSON_ACCEPT: Final = {"Accept": "application/json"}
_PROBE_HEADERS: Final = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
}


@dataclass(frozen=True, slots=True)
class Challenge:
    """The parameters of one ``Bearer`` challenge (RFC 6750 §3, RFC 9728 §5.1)."""

    resource_metadata: str | None = None
    scope: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class AuthorizationServer:
    """What the login needs from RFC 8414 metadata (or the 2025-03-26 defaults)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    registration_endpoint: str | None = None
    revocation_endpoint: str | None = None
    scopes_supported: tuple[str, ...] | None = None
    auth_methods: tuple[str, ...] = ("client_secret_basic",)
    iss_parameter_supported: bool = False
    client_id_metadata_document_supported: bool = False
    metadata_url: str | None = None
    """Where the metadata came from; None for the 2025-03-26 default endpoints."""


@dataclass(frozen=True, slots=True)
class Discovery:
    """Everything discovery learned about one MCP server."""

    server_url: str
    resource: str
    """The RFC 8707 resource to ask a token for (the metadata's ``resource``, else the URL)."""
    scope: str | None
    authorization_server: AuthorizationServer
    resource_metadata_url: str | None = None
    challenge: Challenge | None = None
    tried: tuple[str, ...] = field(default=())


def parse_challenges(values: list[str]) -> dict[str, dict[str, str]]:
    """``WWW-Authenticate`` header values → ``{scheme (lower case): {param: value}}``.

    RFC 9110 §11.6.1: challenges are comma-separated, each a scheme followed by parameters that
    are themselves comma-separated, with quoted strings that may hold commas.
    """
    challenges: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for value in values:
        for item in parse_http_list(value):
            item = item.strip()
            if not item:
                continue
            head, _, rest = item.partition(" ")
            if "=" not in head:
                # "Bearer" or "Bearer realm=..." starts a new challenge.
                current = challenges.setdefault(head.lower(), {})
                item = rest.strip()
                if not item:
                    continue
            if current is None:
                continue
            name, sep, raw = item.partition("=")
            if not sep:
                continue
            raw = raw.strip()
            if len(raw) >= 2 and raw[0] == raw[-1] == '"':
                raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            current[name.strip().lower()] = raw
    return challenges


def _challenge(headers: httpx.Headers) -> Challenge | None:
    bearer = parse_challenges(headers.get_list("WWW-Authenticate")).get("bearer")
    if bearer is None:
        return None
    return Challenge(
        resource_metadata=bearer.get("resource_metadata") or None,
        scope=bearer.get("scope") or None,
        error=bearer.get("error") or None,
    )


def resource_matches(resource: str, server_url: str) -> bool:
    """True if protected-resource metadata for ``resource`` may describe ``server_url``: the
    same scheme, host and port, and a path that is ``server_url``'s or a segment-wise prefix."""
    a, b = urlsplit(resource), urlsplit(server_url)
    if (a.scheme.lower(), _netloc(a)) != (b.scheme.lower(), _netloc(b)):
        return False
    prefix = a.path.rstrip("/")
    path = b.path.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


def _netloc(parts: Any) -> str:
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    port = parts.port if parts.port is not None else default
    return f"{(parts.hostname or '').lower()}:{port}"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def _path(url: str) -> str:
    return urlsplit(url).path.rstrip("/")


def prm_urls(server_url: str) -> list[str]:
    """RFC 9728 §3.1 well-known URLs for ``server_url``: path-suffixed first, then the root."""
    origin, path = _origin(server_url), _path(server_url)
    return [f"{origin}{_PRM}{path}", f"{origin}{_PRM}"] if path else [f"{origin}{_PRM}"]


def as_metadata_urls(issuer: str) -> list[str]:
    """The MCP spec's order of RFC 8414 / OpenID discovery URLs for ``issuer``."""
    origin, path = _origin(issuer), _path(issuer)
    if not path:
        return [f"{origin}{_OAUTH}", f"{origin}{_OPENID}"]
    return [f"{origin}{_OAUTH}{path}", f"{origin}{_OPENID}{path}", f"{origin}{path}{_OPENID}"]


class _Discoverer:
    def __init__(
        self,
        server_url: str,
        *,
        server_http: httpx.AsyncClient,
        as_http: httpx.AsyncClient,
        deadline: float,
        allow_insecure_http: bool,
    ) -> None:
        self.server_url = server_url
        self.server_http = server_http
        self.as_http = as_http
        self.deadline = deadline
        self.allow_insecure_http = allow_insecure_http
        self.tried: list[str] = []

    def check_url(self, url: object, what: str, failure: LoginFailure) -> str:
        if not isinstance(url, str):
            raise LoginError(failure, f"{what} is missing or not a string")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LoginError(failure, f"{what} is not an http(s) URL: {sanitize_description(url)}")
        if parts.scheme == "http" and not (
            self.allow_insecure_http or is_loopback_host(parts.hostname)
        ):
            raise LoginError(
                failure,
                f"{what} {url} is plain http off loopback; refused (allow_insecure_http to permit)",
            )
        return url

    # ---- step 1: the challenge -----------------------------------------------------------

    async def probe(self) -> tuple[Challenge | None, HttpAnswer]:
        initialize = _rpc(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "freshtoken-login", "version": __version__},
            },
        )
        answer = await self._post(initialize, {})
        if answer.status in (401, 403):
            return _challenge(answer.headers), answer
        session = answer.headers.get("Mcp-Session-Id")
        if not 200 <= answer.status < 300:
            return None, answer
        # Initialized without a token: the challenge comes with the first real request.
        headers = {"Mcp-Session-Id": session} if session else {}
        follow = await self._post(_rpc("tools/list", {}, rpc_id=2), headers)
        if session:
            # Ending the probe's session is a courtesy, not a step of the login.
            with contextlib.suppress(LoginError):
                await request(
                    self.server_http,
                    "DELETE",
                    self.server_url,
                    deadline=self.deadline,
                    read_body=False,
                    headers=headers,
                )
        if follow.status in (401, 403):
            return _challenge(follow.headers), follow
        return None, answer

    async def _post(self, body: bytes, headers: dict[str, str]) -> HttpAnswer:
        try:
            return await request(
                self.server_http,
                "POST",
                self.server_url,
                deadline=self.deadline,
                read_body=False,
                content=body,
                headers={**_PROBE_HEADERS, **headers},
            )
        except LoginError as exc:
            raise LoginError(LoginFailure.FAILED, f"cannot reach the MCP server: {exc}") from None

    # ---- step 2: protected-resource metadata ----------------------------------------------

    async def protected_resource(
        self, challenge: Challenge | None
    ) -> tuple[dict[str, Any], str] | None:
        candidates = prm_urls(self.server_url)
        if challenge is not None and challenge.resource_metadata:
            url = self.check_url(
                challenge.resource_metadata,
                "the challenge's resource_metadata",
                LoginFailure.NO_AUTHORIZATION_SERVER,
            )
            candidates = [url, *(c for c in candidates if c != url)]
        for url in candidates:
            document = await self._document(self.server_http, url)
            if document is None:
                continue
            servers = document.get("authorization_servers")
            if not isinstance(servers, list) or not servers:
                log.info("protected-resource metadata at %s lists no authorization server", url)
                continue
            resource = document.get("resource")
            if resource is not None and (
                not isinstance(resource, str) or not resource_matches(resource, self.server_url)
            ):
                shown = sanitize_description(str(resource))
                raise LoginError(
                    LoginFailure.NO_AUTHORIZATION_SERVER,
                    f"the protected-resource metadata at {url} is for {shown}, not for "
                    f"{self.server_url}: refused",
                )
            return document, url
        return None

    async def _document(self, client: httpx.AsyncClient, url: str) -> dict[str, Any] | None:
        self.tried.append(url)
        try:
            answer = await request(
                client,
                "GET",
                url,
                deadline=self.deadline,
                follow_redirects=True,
                headers=_JSON_ACCEPT,
            )
        except LoginError as exc:
            log.info("%s", exc)
            return None
        if answer.status != 200:
            log.info("%s: HTTP %d", url, answer.status)
            return None
        document = answer.json_object()
        if document is None:
            log.info("%s: not a JSON object", url)
        return document

    # ---- step 3: authorization-server metadata ---------------------------------------------

    async def authorization_server(self, issuer: str) -> AuthorizationServer | None:
        for url in as_metadata_urls(issuer):
            document = await self._document(self.as_http, url)
            if document is None:
                continue
            found = document.get("issuer")
            if not isinstance(found, str) or found.rstrip("/") != issuer.rstrip("/"):
                shown = sanitize_description(str(found))
                raise LoginError(
                    LoginFailure.NO_AUTHORIZATION_SERVER,
                    f"the authorization-server metadata at {url} names issuer {shown}, not "
                    f"{issuer} (RFC 8414 §3.3): refused",
                )
            return self._metadata(document, url)
        return None

    def _metadata(self, document: dict[str, Any], url: str) -> AuthorizationServer:
        failure = LoginFailure.NO_AUTHORIZATION_SERVER
        methods = document.get("code_challenge_methods_supported")
        if not isinstance(methods, list) or "S256" not in methods:
            raise LoginError(
                failure,
                f"the authorization server at {url} does not advertise PKCE S256 "
                "(code_challenge_methods_supported); refused",
            )
        auth_methods = document.get("token_endpoint_auth_methods_supported")
        scopes = document.get("scopes_supported")
        return AuthorizationServer(
            issuer=document["issuer"],
            authorization_endpoint=self.check_url(
                document.get("authorization_endpoint"), f"authorization_endpoint at {url}", failure
            ),
            token_endpoint=self.check_url(
                document.get("token_endpoint"), f"token_endpoint at {url}", failure
            ),
            registration_endpoint=self._optional_url(document, "registration_endpoint", url),
            revocation_endpoint=self._optional_url(document, "revocation_endpoint", url),
            scopes_supported=_strings(scopes),
            auth_methods=_strings(auth_methods) or ("client_secret_basic",),
            iss_parameter_supported=document.get("authorization_response_iss_parameter_supported")
            is True,
            client_id_metadata_document_supported=document.get(
                "client_id_metadata_document_supported"
            )
            is True,
            metadata_url=url,
        )

    def _optional_url(self, document: dict[str, Any], name: str, url: str) -> str | None:
        if document.get(name) is None:
            return None
        return self.check_url(document.get(name), f"{name} at {url}", LoginFailure.FAILED)


def _strings(value: object) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(v for v in value if isinstance(v, str))


def _rpc(method: str, params: dict[str, Any], *, rpc_id: int = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rpc_id, "method": method, "params": params}).encode()


async def discover(
    server_url: str,
    *,
    server_http: httpx.AsyncClient,
    as_http: httpx.AsyncClient,
    deadline: float,
    allow_insecure_http: bool = False,
) -> Discovery:
    """Find the authorization server of the MCP server at ``server_url`` (see the module doc).

    ``server_http`` talks to the MCP server, ``as_http`` to the authorization server; every
    request is bounded by ``deadline``. Raises :class:`LoginError`
    (``NO_AUTHORIZATION_SERVER`` when nothing usable is found or metadata fails validation).
    """
    steps = _Discoverer(
        server_url,
        server_http=server_http,
        as_http=as_http,
        deadline=deadline,
        allow_insecure_http=allow_insecure_http,
    )
    steps.check_url(server_url, "the MCP server URL", LoginFailure.FAILED)
    challenge, answer = await steps.probe()
    found = await steps.protected_resource(challenge)
    if found is not None:
        document, prm_url = found
        issuer = steps.check_url(
            document["authorization_servers"][0],
            f"the first authorization server listed at {prm_url}",
            LoginFailure.NO_AUTHORIZATION_SERVER,
        )
        server = await steps.authorization_server(issuer)
        if server is None:
            raise LoginError(
                LoginFailure.NO_AUTHORIZATION_SERVER,
                f"no authorization server found: no metadata for {issuer} (tried "
                f"{', '.join(as_metadata_urls(issuer))})",
            )
        resource = document.get("resource")
        scope = challenge.scope if challenge is not None else None
        if scope is None:
            supported = _strings(document.get("scopes_supported"))
            scope = " ".join(supported) if supported else None
        return Discovery(
            server_url=server_url,
            resource=resource if isinstance(resource, str) else server_url,
            scope=scope,
            authorization_server=server,
            resource_metadata_url=prm_url,
            challenge=challenge,
            tried=tuple(steps.tried),
        )
    if answer.status != 401:
        raise LoginError(
            LoginFailure.NO_AUTHORIZATION_SERVER,
            f"no authorization server found: {server_url} answered HTTP {answer.status} "
            f"without a token and publishes no protected-resource metadata (tried "
            f"{', '.join(prm_urls(server_url))})",
        )
    # A 2025-03-26 server: its origin is the authorization server.
    origin = _origin(server_url)
    server = await steps.authorization_server(origin)
    if server is None:
        server = AuthorizationServer(
            issuer=origin,
            authorization_endpoint=f"{origin}/authorize",
            token_endpoint=f"{origin}/token",
            registration_endpoint=f"{origin}/register",
        )
    return Discovery(
        server_url=server_url,
        resource=server_url,
        scope=challenge.scope if challenge is not None else None,
        authorization_server=server,
        challenge=challenge,
        tried=tuple(steps.tried),
    )
