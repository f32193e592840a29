"""The fake OAuth authorization server's protocol logic, free of sockets and web frameworks.

:class:`OAuthCore` answers :class:`CoreRequest` with :class:`CoreResponse`; the aiohttp and respx
adapters only translate. Everything the server does is recorded on the timeline (actor ``"as"``)
with tokens as fingerprints.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import math
import re
import secrets
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from freshtoken._clock import Clock, SystemClock
from freshtoken._errors import ConfigError, ServerSideError
from freshtoken._serve import is_loopback_host
from freshtoken._timeline import Timeline, fingerprint

__all__ = [
    "ClientRecord",
    "CoreRequest",
    "CoreResponse",
    "OAuthCore",
    "SeenTokenRequest",
    "TokenInfo",
    "TokenPair",
    "TokenPolicy",
]

ACTOR: Final = "as"
METADATA_PATH: Final = "/.well-known/oauth-authorization-server"
AUTHORIZE_PATH: Final = "/authorize"
TOKEN_PATH: Final = "/token"
REVOCATION_PATH: Final = "/revoke"
INTROSPECTION_PATH: Final = "/introspect"
REGISTRATION_PATH: Final = "/register"
CONTROL_PREFIX: Final = "/_freshtoken/"

_GRANT_TYPES: Final = ("authorization_code", "client_credentials", "refresh_token")
_AUTH_METHODS: Final = ("client_secret_basic", "client_secret_post", "none")
_CODE_TTL: Final = 600.0
# RFC 7636 §4.1: 43-128 characters from the unreserved set.
_VERIFIER_RE: Final = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_GARBAGE: Final = b'{"access_token": "\x00\xff<html><body>502 Bad Gateway</bo'
_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_CONTROL_METHODS: Final = {
    "rotate": ("POST",),
    "expire": ("POST",),
    "revoke": ("POST",),
    "faults": ("POST",),
    "issue": ("POST",),
    "policy": ("GET", "POST"),
    "stats": ("GET",),
}


@dataclass
class TokenPolicy:
    """How the server issues and accepts tokens; mutable while the server runs.

    ``grace_period`` is how many seconds a superseded refresh token is still accepted (it then
    yields a fresh pair without triggering reuse detection); at exactly ``grace_period``
    seconds it is a reuse.
    """

    access_ttl: float = 3600.0
    report_expires_in: bool = True
    rotate_refresh_tokens: bool = True
    reuse_detection: bool = True
    grace_period: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The policy as a JSON-ready dict (what ``GET /_freshtoken/policy`` returns)."""
        return dataclasses.asdict(self)

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply ``changes`` (field name → value), type-checked; raise :class:`ConfigError` on bad input."""
        fields = {f.name: f.type for f in dataclasses.fields(self)}
        for name, value in changes.items():
            kind = fields.get(name)
            if kind is None:
                raise ConfigError(f"unknown token policy field {name!r}")
            if kind == "bool":
                if not isinstance(value, bool):
                    raise ConfigError(f"token policy {name} must be a boolean, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"token policy {name} must be a number, got {value!r}")
            elif not math.isfinite(value) or value < 0:
                raise ConfigError(f"token policy {name} must be finite and >= 0, got {value!r}")
        for name, value in changes.items():
            setattr(self, name, float(value) if fields[name] == "float" else value)


@dataclass(frozen=True)
class TokenPair:
    """What a successful token response carries (``refresh_token`` is None when none was issued)."""

    access_token: str
    refresh_token: str | None
    expires_in: int | None
    scope: str | None
    token_type: str = "Bearer"

    def to_json(self) -> dict[str, Any]:
        """The RFC 6749 §5.1 response body, omitting absent optional members."""
        body: dict[str, Any] = {"access_token": self.access_token, "token_type": self.token_type}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        if self.scope is not None:
            body["scope"] = self.scope
        return body


@dataclass(frozen=True, slots=True)
class SeenTokenRequest:
    """One token-endpoint request as the authorization server saw it: what verdicts count.

    ``status`` is None when a fault reset the connection; ``error`` is the RFC 6749 error code
    of a refusal, or ``"fault"`` when an injected fault answered instead of the grant logic.
    ``refresh_token`` is the fingerprint of the refresh token presented (never the token).
    ``time`` is read from the server's clock.
    """

    grant_type: str | None
    client_id: str | None
    status: int | None
    error: str | None
    refresh_token: str | None
    time: float


@dataclass(frozen=True)
class TokenInfo:
    """What the server knows about a valid access token (``resource`` is its RFC 8707 audience)."""

    client_id: str
    scope: str | None
    resource: str | None
    expires_at: float
    family: str


@dataclass(frozen=True)
class ClientRecord:
    """A registered client. ``client_secret`` is None for public clients (auth method ``none``).

    A client with no ``redirect_uris`` accepts any absolute redirect URI, which keeps ad-hoc test
    clients short; registered URIs must match exactly.
    """

    client_id: str
    client_secret: str | None
    redirect_uris: tuple[str, ...] = ()
    token_endpoint_auth_method: str = "client_secret_basic"
    grant_types: tuple[str, ...] = _GRANT_TYPES
    scope: str | None = None
    client_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        """RFC 7591 client information (metadata plus credentials)."""
        body: dict[str, Any] = {
            "client_id": self.client_id,
            "redirect_uris": list(self.redirect_uris),
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
            "grant_types": list(self.grant_types),
            "response_types": ["code"] if "authorization_code" in self.grant_types else [],
        }
        if self.client_secret is not None:
            body["client_secret"] = self.client_secret
            body["client_secret_expires_at"] = 0
        if self.scope is not None:
            body["scope"] = self.scope
        if self.client_name is not None:
            body["client_name"] = self.client_name
        return body


@dataclass(frozen=True)
class CoreRequest:
    """An HTTP request as the core sees it. Header names are matched case-insensitively."""

    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", self.method.upper())
        object.__setattr__(self, "headers", {k.lower(): v for k, v in self.headers.items()})

    def header(self, name: str) -> str | None:
        """The value of header ``name``, or None."""
        return self.headers.get(name.lower())


@dataclass
class CoreResponse:
    """An HTTP response from the core.

    ``delay`` asks the adapter to wait that long on the server's clock before answering;
    ``reset`` asks it to drop the connection instead of answering.
    """

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0
    reset: bool = False

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


class _UnknownTokenError(ConfigError):
    """A control named a token this server never issued."""


class _OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def response(self) -> CoreResponse:
        headers = dict(_NO_STORE)
        if self.status == 401:
            # RFC 6749 §5.2 requires the challenge when the client used the Authorization header;
            # RFC 9110 requires one on every 401, so it is always present.
            headers["WWW-Authenticate"] = 'Basic realm="freshtoken"'
        return _json_response(
            self.status, {"error": self.error, "error_description": self.description}, headers
        )


@dataclass
class _Family:
    id: str
    client_id: str
    revoked: bool = False


@dataclass
class _Access:
    family: _Family
    scope: str | None
    resource: str | None
    issued_at: float
    expires_at: float
    revoked: bool = False


@dataclass
class _Refresh:
    family: _Family
    scope: str | None
    resource: str | None
    issued_at: float
    superseded_at: float | None = None
    expired: bool = False


@dataclass
class _Code:
    client_id: str
    redirect_uri: str | None
    code_challenge: str | None
    scope: str | None
    resource: str | None
    expires_at: float
    family: _Family | None = None


@dataclass(frozen=True)
class _Fault:
    status: int
    error: str | None
    delay: float
    reset: bool
    garbage: bool

    @property
    def passes_through(self) -> bool:
        """A fault with a success status only delays an otherwise normal answer."""
        return self.status < 400 and not self.reset and not self.garbage

    @property
    def what(self) -> str:
        if self.reset:
            return "reset"
        if self.garbage:
            return "garbage"
        return "delay" if self.passes_through else "status"

    def response(self) -> CoreResponse:
        if self.reset:
            return CoreResponse(0, delay=self.delay, reset=True)
        if self.garbage:
            headers = {"Content-Type": "application/json", **_NO_STORE}
            return CoreResponse(self.status, headers, _GARBAGE, delay=self.delay)
        if self.error is None:
            headers = {"Content-Type": "text/plain; charset=utf-8"}
            return CoreResponse(self.status, headers, b"injected fault", delay=self.delay)
        body = {"error": self.error, "error_description": "injected fault"}
        response = _json_response(self.status, body, dict(_NO_STORE))
        response.delay = self.delay
        return response


@dataclass
class _QueuedFault:
    fault: _Fault
    remaining: int


def _json_response(
    status: int, body: Any, headers: Mapping[str, str] | None = None
) -> CoreResponse:
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return CoreResponse(status, all_headers, json.dumps(body).encode())


def _scopes(scope: str | None) -> list[str]:
    return scope.split() if scope else []


class OAuthCore:
    """The fake authorization server's state and protocol: tokens, clients, policy, faults.

    One pre-registered confidential client (:attr:`client_id`, :attr:`client_secret`) may use
    every grant. ``scopes_supported`` bounds what may be requested (else ``invalid_scope``).
    Public methods are safe to call from any thread while a server runs on another.
    """

    def __init__(
        self,
        *,
        issuer: str = "http://127.0.0.1",
        clock: Clock | None = None,
        timeline: Timeline | None = None,
        policy: TokenPolicy | None = None,
        scopes_supported: Sequence[str] = ("mcp", "read", "write", "offline_access"),
        max_seen: int = 10_000,
    ) -> None:
        self.issuer = issuer
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.timeline = timeline if timeline is not None else Timeline(self.clock)
        self.policy = policy if policy is not None else TokenPolicy()
        self.scopes_supported = tuple(scopes_supported)
        self.token_requests = 0
        self.errors: list[BaseException] = []
        # The oracle's record is bounded: a long-running server keeps the newest requests, and
        # the counters beside it stay exact however many were dropped.
        self._seen: deque[SeenTokenRequest] = deque(maxlen=max_seen)
        self._seen_by_grant: dict[str | None, int] = {}
        self._authorizations = 0
        self._lock = threading.RLock()
        self._clients: dict[str, ClientRecord] = {}
        self._access: dict[str, _Access] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._codes: dict[str, _Code] = {}
        self._faults: deque[_QueuedFault] = deque()
        self._pending: list[tuple[str, dict[str, Any]]] | None = None
        self._routes: dict[str, tuple[tuple[str, ...], Callable[[CoreRequest], CoreResponse]]] = {
            METADATA_PATH: (("GET",), self._metadata_endpoint),
            AUTHORIZE_PATH: (("GET",), self._authorize_endpoint),
            TOKEN_PATH: (("POST",), self._token_endpoint),
            REVOCATION_PATH: (("POST",), self._revocation_endpoint),
            INTROSPECTION_PATH: (("POST",), self._introspection_endpoint),
            REGISTRATION_PATH: (("POST",), self._registration_endpoint),
        }
        default = self.register_client(token_endpoint_auth_method="client_secret_basic")
        self.client_id = default.client_id
        self.client_secret: str = default.client_secret or ""

    # ---- Python controls -------------------------------------------------------------------

    def register_client(
        self,
        *,
        redirect_uris: Sequence[str] = (),
        token_endpoint_auth_method: str = "client_secret_basic",
        grant_types: Sequence[str] | None = None,
        scope: str | None = None,
        client_name: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> ClientRecord:
        """Register a client and return it; a confidential client gets a secret if none is given.

        ``grant_types`` defaults to every grant the client type may use (public clients cannot
        use ``client_credentials``).
        """
        public = token_endpoint_auth_method == "none"
        if grant_types is None:
            grant_types = ("authorization_code", "refresh_token") if public else _GRANT_TYPES
        if token_endpoint_auth_method not in _AUTH_METHODS:
            raise ConfigError(
                f"unsupported token_endpoint_auth_method {token_endpoint_auth_method!r}"
            )
        unknown = [g for g in grant_types if g not in _GRANT_TYPES]
        if unknown:
            raise ConfigError(f"unsupported grant_types {unknown}")
        if public and "client_credentials" in grant_types:
            raise ConfigError("a public client cannot use the client_credentials grant")
        record = ClientRecord(
            client_id=client_id or secrets.token_urlsafe(12),
            client_secret=None if public else (client_secret or secrets.token_urlsafe(24)),
            redirect_uris=tuple(redirect_uris),
            token_endpoint_auth_method=token_endpoint_auth_method,
            grant_types=tuple(grant_types),
            scope=scope,
            client_name=client_name,
        )
        with self._lock:
            if record.client_id in self._clients:
                raise ConfigError(f"client {record.client_id!r} is already registered")
            self._clients[record.client_id] = record
            self._emit(
                "client.registered", client_id=record.client_id, method=token_endpoint_auth_method
            )
        return record

    def client(self, client_id: str) -> ClientRecord | None:
        """The registered client ``client_id``, or None."""
        with self._lock:
            return self._clients.get(client_id)

    def issue_tokens(
        self, client_id: str | None = None, *, scope: str | None = None, resource: str | None = None
    ) -> TokenPair:
        """Mint an access + refresh token pair in a new family, as if a grant had just succeeded.

        Seeding is a test's prerogative: ``scope`` and ``resource`` are taken as given.
        """
        with self._lock:
            owner = client_id or self.client_id
            if owner not in self._clients:
                raise ConfigError(f"unknown client {owner!r}")
            family = self._new_family(owner)
            return self._issue(family, scope, resource, grant_type="seed", with_refresh=True)

    def validate_access_token(self, token: str) -> TokenInfo | None:
        """What the server knows of a currently valid access token; None if unknown/expired/revoked."""
        with self._lock:
            access = self._access.get(token)
            if access is None or not self._active(access):
                return None
            return TokenInfo(
                client_id=access.family.client_id,
                scope=access.scope,
                resource=access.resource,
                expires_at=access.expires_at,
                family=access.family.id,
            )

    def rotate(self) -> None:
        """Invalidate every currently valid access token now; refresh tokens stay valid."""
        with self._lock:
            live = [a for a in self._access.values() if self._active(a)]
            for access in live:
                access.revoked = True
            self._emit("tokens.rotated", count=len(live))

    def expire(self, token: str) -> None:
        """Expire one access or refresh token now."""
        with self._lock:
            if (access := self._access.get(token)) is not None:
                access.expires_at = min(access.expires_at, self.clock.time())
                self._emit("token.expired", token=token, type="access", family=access.family.id)
            elif (refresh := self._refresh.get(token)) is not None:
                refresh.expired = True
                self._emit("token.expired", token=token, type="refresh", family=refresh.family.id)
            else:
                raise _UnknownTokenError(f"unknown token {fingerprint(token)}")

    def revoke_family(self, token: str) -> None:
        """Revoke every token of the grant family that ``token`` (access or refresh) belongs to."""
        with self._lock:
            family = self._family_of(token)
            if family is None:
                raise _UnknownTokenError(f"unknown token {fingerprint(token)}")
            self._revoke(family, reason="control")

    def fail_next(
        self,
        times: int = 1,
        *,
        status: int = 503,
        error: str | None = "temporarily_unavailable",
        delay: float = 0.0,
        reset: bool = False,
        garbage: bool = False,
    ) -> None:
        """Fault the next ``times`` token-endpoint requests (queued after faults already pending).

        A fault answers ``status`` with an RFC 6749 error body for ``error`` (a plain-text body
        when ``error`` is None), after ``delay`` seconds on the server's clock. ``reset`` drops
        the connection instead; ``garbage`` answers ``status`` with a body that is not JSON. A
        fault with a status below 400 (and neither reset nor garbage) lets the request through
        normally and only delays the answer.
        """
        if times < 1:
            raise ConfigError(f"fail_next times must be >= 1, got {times}")
        if not 100 <= status <= 599:
            raise ConfigError(f"fail_next status must be an HTTP status, got {status}")
        if not math.isfinite(delay) or delay < 0:
            raise ConfigError(f"fail_next delay must be finite and >= 0, got {delay}")
        with self._lock:
            fault = _Fault(status, error, float(delay), reset, garbage)
            self._faults.append(_QueuedFault(fault, times))

    def token_requests_seen(self, grant_type: str | None = None) -> list[SeenTokenRequest]:
        """Token-endpoint requests this server answered (or reset), oldest first.

        ``grant_type`` keeps only requests naming that grant. Only the newest ``max_seen``
        requests are kept; :meth:`stats` counts every one.
        """
        with self._lock:
            return [r for r in self._seen if grant_type is None or r.grant_type == grant_type]

    def authorizations_seen(self) -> int:
        """How many ``/authorize`` requests were answered with a code (an interactive login)."""
        with self._lock:
            return self._authorizations

    @property
    def faults_pending(self) -> int:
        """How many token requests the queued faults will still affect."""
        with self._lock:
            return sum(queued.remaining for queued in self._faults)

    def check(self) -> None:
        """Raise :class:`ServerSideError` if any request crashed a handler (the first one is chained)."""
        if self.errors:
            first = self.errors[0]
            raise ServerSideError(
                f"the fake authorization server hit {len(self.errors)} unexpected error(s); "
                f"first: {first!r}"
            ) from first

    def metadata(self) -> dict[str, Any]:
        """The RFC 8414 authorization server metadata document."""
        base = self.issuer.rstrip("/")
        auth_methods = list(_AUTH_METHODS)
        return {
            "issuer": self.issuer,
            "authorization_endpoint": base + AUTHORIZE_PATH,
            "token_endpoint": base + TOKEN_PATH,
            "revocation_endpoint": base + REVOCATION_PATH,
            "introspection_endpoint": base + INTROSPECTION_PATH,
            "registration_endpoint": base + REGISTRATION_PATH,
            "scopes_supported": list(self.scopes_supported),
            "response_types_supported": ["code"],
            "grant_types_supported": list(_GRANT_TYPES),
            "token_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "introspection_endpoint_auth_methods_supported": auth_methods[:2],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
        }

    # ---- HTTP ------------------------------------------------------------------------------

    def handle(self, request: CoreRequest) -> CoreResponse:
        """Answer one HTTP request. Never raises: a crash becomes a 500 and is kept for :meth:`check`."""
        with self._lock:
            try:
                return self._route(request)
            except Exception as exc:
                self.errors.append(exc)
                self._pending = None
                self.timeline.record(
                    ACTOR,
                    "server.error",
                    status=500,
                    path=request.path,
                    error=repr(exc),
                    where=traceback.format_exception(exc)[-1].strip(),
                )
                return _json_response(
                    500,
                    {"error": "server_error", "error_description": "unexpected server error"},
                    _NO_STORE,
                )

    def _route(self, request: CoreRequest) -> CoreResponse:
        path = request.path
        if path.startswith(CONTROL_PREFIX):
            return self._control(request, path.removeprefix(CONTROL_PREFIX))
        if path not in self._routes:
            return _json_response(404, {"error": "not_found", "error_description": path})
        methods, endpoint = self._routes[path]
        if request.method not in methods:
            response = _OAuthError(
                "invalid_request", f"{request.method} is not allowed here", 405
            ).response()
            response.headers["Allow"] = ", ".join(methods)
            return response
        try:
            return endpoint(request)
        except _OAuthError as exc:
            return exc.response()

    def _metadata_endpoint(self, request: CoreRequest) -> CoreResponse:
        return _json_response(200, self.metadata())

    # ---- /authorize ------------------------------------------------------------------------

    def _authorize_endpoint(self, request: CoreRequest) -> CoreResponse:
        params = _parse_unique(request.query)
        client = self._clients.get(params.get("client_id", ""))
        if client is None:
            raise _OAuthError("invalid_request", "unknown or missing client_id")
        redirect_uri = self._redirect_uri(client, params.get("redirect_uri"))
        state = params.get("state")

        def redirect(**result: str) -> CoreResponse:
            if state is not None:
                result["state"] = state
            result["iss"] = self.issuer
            parts = urlsplit(redirect_uri)
            query = "&".join(q for q in (parts.query, urlencode(result)) if q)
            location = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
            return CoreResponse(302, {"Location": location, **_NO_STORE})

        def refuse(error: str, description: str) -> CoreResponse:
            self._emit("authorize.refused", client_id=client.client_id, error=error)
            return redirect(error=error, error_description=description)

        if params.get("response_type") != "code":
            return refuse("unsupported_response_type", "only response_type=code is supported")
        if "authorization_code" not in client.grant_types:
            return refuse("unauthorized_client", "client may not use authorization_code")
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method", "plain" if challenge else None)
        if challenge is None and client.client_secret is None:
            return refuse("invalid_request", "public clients must use PKCE (code_challenge)")
        if challenge is not None and method != "S256":
            return refuse("invalid_request", "code_challenge_method must be S256")
        try:
            scope = self._check_scope(client, params.get("scope"))
        except _OAuthError as exc:
            return refuse(exc.error, exc.description)
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Code(
            client_id=client.client_id,
            redirect_uri=params.get("redirect_uri"),
            code_challenge=challenge,
            scope=scope,
            resource=params.get("resource"),
            expires_at=self.clock.time() + _CODE_TTL,
        )
        self._authorizations += 1
        self._emit("code.issued", token=code, client_id=client.client_id)
        return redirect(code=code)

    def _redirect_uri(self, client: ClientRecord, given: str | None) -> str:
        if given is None:
            if len(client.redirect_uris) != 1:
                raise _OAuthError("invalid_request", "redirect_uri is required")
            return client.redirect_uris[0]
        if client.redirect_uris and given not in client.redirect_uris:
            raise _OAuthError("invalid_request", "redirect_uri is not registered for this client")
        parts = urlsplit(given)
        if not parts.scheme or parts.fragment:
            raise _OAuthError("invalid_request", "redirect_uri must be absolute, without fragment")
        return given

    # ---- /token ----------------------------------------------------------------------------

    def _token_endpoint(self, request: CoreRequest) -> CoreResponse:
        self.token_requests += 1
        fault = self._next_fault()
        form: dict[str, str] = {}
        form_error: _OAuthError | None = None
        try:
            form = _parse_form(request)
        except _OAuthError as exc:
            form_error = exc
        grant_type = form.get("grant_type")
        client_id = _basic_client_id(request) or form.get("client_id")
        presented = fingerprint(form.get("refresh_token"))

        if fault is not None and not fault.passes_through:
            response = fault.response()
            status = None if fault.reset else fault.status
            self._saw(grant_type, client_id, status, "fault", presented)
            self.timeline.record(
                ACTOR,
                "token.request",
                status=status,
                grant_type=grant_type,
                client_id=client_id,
            )
            self.timeline.record(ACTOR, "fault", status=status, what=fault.what, delay=fault.delay)
            return response

        error: str | None = None
        with self._buffered_events() as events:
            try:
                if form_error is not None:
                    raise form_error
                response = self._grant(request, form)
            except _OAuthError as exc:
                error = exc.error
                response = exc.response()
                events.append(
                    (
                        "token.refused",
                        {
                            "status": exc.status,
                            "error": exc.error,
                            "grant_type": grant_type,
                            "client_id": client_id,
                        },
                    )
                )
        self.timeline.record(
            ACTOR,
            "token.request",
            status=response.status,
            grant_type=grant_type,
            client_id=client_id,
        )
        self._saw(grant_type, client_id, response.status, error, presented)
        for kind, detail in events:
            self.timeline.record(ACTOR, kind, **detail)
        if fault is not None:
            self.timeline.record(ACTOR, "fault", what=fault.what, delay=fault.delay)
            response.delay = fault.delay
        return response

    def _saw(
        self,
        grant_type: str | None,
        client_id: str | None,
        status: int | None,
        error: str | None,
        refresh_token: str | None,
    ) -> None:
        seen = SeenTokenRequest(
            grant_type, client_id, status, error, refresh_token, self.clock.time()
        )
        self._seen.append(seen)
        self._seen_by_grant[grant_type] = self._seen_by_grant.get(grant_type, 0) + 1

    def _grant(self, request: CoreRequest, form: dict[str, str]) -> CoreResponse:
        grant_type = form.get("grant_type")
        if not grant_type:
            raise _OAuthError("invalid_request", "grant_type is required")
        client = self._authenticate(request, form)
        if grant_type not in _GRANT_TYPES:
            raise _OAuthError(
                "unsupported_grant_type", f"grant_type {grant_type!r} is not supported"
            )
        if grant_type not in client.grant_types:
            raise _OAuthError("unauthorized_client", f"client may not use {grant_type}")
        if grant_type == "refresh_token":
            pair = self._refresh_grant(client, form)
        elif grant_type == "client_credentials":
            pair = self._client_credentials_grant(client, form)
        else:
            pair = self._authorization_code_grant(client, form)
        return _json_response(200, pair.to_json(), _NO_STORE)

    def _authenticate(self, request: CoreRequest, form: dict[str, str]) -> ClientRecord:
        authorization = request.header("Authorization")
        secret: str | None
        if authorization is not None:
            client_id, secret = _decode_basic(authorization)
            if "client_secret" in form:
                raise _OAuthError("invalid_request", "use one client authentication method")
            if form.get("client_id", client_id) != client_id:
                raise _OAuthError("invalid_request", "client_id does not match the credentials")
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret")
        client = self._clients.get(client_id)
        if client is None:
            raise _OAuthError("invalid_client", "client authentication failed", 401)
        if client.client_secret is None:
            if secret is not None:
                raise _OAuthError("invalid_client", "public client sent a secret", 401)
        elif secret is None or not secrets.compare_digest(secret, client.client_secret):
            raise _OAuthError("invalid_client", "client authentication failed", 401)
        return client

    def _refresh_grant(self, client: ClientRecord, form: dict[str, str]) -> TokenPair:
        token = form.get("refresh_token")
        if not token:
            raise _OAuthError("invalid_request", "refresh_token is required")
        refresh = self._refresh.get(token)
        if refresh is None or refresh.family.client_id != client.client_id:
            raise _OAuthError("invalid_grant", "unknown refresh token")
        family = refresh.family
        if family.revoked:
            raise _OAuthError("invalid_grant", "refresh token revoked")
        if refresh.expired:
            raise _OAuthError("invalid_grant", "refresh token expired")
        now = self.clock.time()
        if refresh.superseded_at is not None:
            age = now - refresh.superseded_at
            if age >= self.policy.grace_period:
                if self.policy.reuse_detection:
                    self._emit("refresh.reuse", token=token, family=family.id, superseded_for=age)
                    self._revoke(family, reason="reuse")
                    raise _OAuthError("invalid_grant", "refresh token reused; family revoked")
                raise _OAuthError("invalid_grant", "refresh token was superseded")
            self._emit("refresh.grace", token=token, family=family.id, superseded_for=age)
        scope = refresh.scope
        if "scope" in form:
            requested = _scopes(form["scope"])
            if not requested or not set(requested) <= set(_scopes(refresh.scope)):
                raise _OAuthError("invalid_scope", "scope exceeds the original grant")
            scope = " ".join(requested)
        resource = refresh.resource
        if "resource" in form:
            if refresh.resource is not None and form["resource"] != refresh.resource:
                raise _OAuthError("invalid_target", "resource differs from the original grant")
            resource = form["resource"]
        rotate = self.policy.rotate_refresh_tokens
        pair = self._issue(family, scope, resource, grant_type="refresh_token", with_refresh=rotate)
        if rotate and refresh.superseded_at is None:
            refresh.superseded_at = now
            self._emit(
                "refresh.rotated",
                token=token,
                successor=fingerprint(pair.refresh_token),
                family=family.id,
            )
        return pair

    def _client_credentials_grant(self, client: ClientRecord, form: dict[str, str]) -> TokenPair:
        scope = self._check_scope(client, form.get("scope"))
        family = self._new_family(client.client_id)
        return self._issue(
            family, scope, form.get("resource"), grant_type="client_credentials", with_refresh=False
        )

    def _authorization_code_grant(self, client: ClientRecord, form: dict[str, str]) -> TokenPair:
        code_value = form.get("code")
        if not code_value:
            raise _OAuthError("invalid_request", "code is required")
        code = self._codes.get(code_value)
        if code is None or code.client_id != client.client_id:
            raise _OAuthError("invalid_grant", "unknown authorization code")
        if code.family is not None:
            # RFC 6749 §4.1.2: a replayed code revokes what it already produced.
            self._revoke(code.family, reason="code_reuse")
            raise _OAuthError("invalid_grant", "authorization code already used")
        if self.clock.time() >= code.expires_at:
            raise _OAuthError("invalid_grant", "authorization code expired")
        if code.redirect_uri is not None and form.get("redirect_uri") != code.redirect_uri:
            raise _OAuthError("invalid_grant", "redirect_uri does not match the authorization")
        verifier = form.get("code_verifier")
        if code.code_challenge is not None:
            if verifier is None:
                raise _OAuthError("invalid_request", "code_verifier is required")
            if not _VERIFIER_RE.fullmatch(verifier):
                raise _OAuthError("invalid_grant", "malformed code_verifier")
            digest = hashlib.sha256(verifier.encode("ascii")).digest()
            expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
            if not secrets.compare_digest(expected, code.code_challenge):
                raise _OAuthError("invalid_grant", "code_verifier does not match code_challenge")
        elif verifier is not None:
            raise _OAuthError("invalid_grant", "code_verifier sent for a code without PKCE")
        resource = code.resource
        if "resource" in form:
            if code.resource is not None and form["resource"] != code.resource:
                raise _OAuthError("invalid_target", "resource differs from the authorization")
            resource = form["resource"]
        code.family = self._new_family(client.client_id)
        return self._issue(
            code.family, code.scope, resource, grant_type="authorization_code", with_refresh=True
        )

    def _check_scope(self, client: ClientRecord, requested: str | None) -> str | None:
        if requested is None:
            return client.scope
        scopes = _scopes(requested)
        allowed = set(_scopes(client.scope)) if client.scope else set(self.scopes_supported)
        unknown = [s for s in scopes if s not in allowed]
        if not scopes or unknown:
            raise _OAuthError(
                "invalid_scope", f"scope not allowed: {' '.join(unknown) or '(empty)'}"
            )
        return " ".join(scopes)

    # ---- RFC 7009 revocation, RFC 7662 introspection, RFC 7591 registration ------------------

    def _revocation_endpoint(self, request: CoreRequest) -> CoreResponse:
        form = _parse_form(request)
        client = self._authenticate(request, form)
        token = form.get("token")
        if not token:
            raise _OAuthError("invalid_request", "token is required")
        family = self._family_of(token)
        if family is not None and family.client_id != client.client_id:
            raise _OAuthError("invalid_request", "token was issued to another client")
        if (access := self._access.get(token)) is not None:
            access.revoked = True
            self._emit("token.revoked", token=token, type="access", family=access.family.id)
        elif family is not None:
            # RFC 7009 §2.1: revoking a refresh token revokes the grant's access tokens too.
            self._emit("token.revoked", token=token, type="refresh", family=family.id)
            self._revoke(family, reason="revocation")
        return CoreResponse(200, dict(_NO_STORE))

    def _introspection_endpoint(self, request: CoreRequest) -> CoreResponse:
        form = _parse_form(request)
        client = self._authenticate(request, form)
        if client.client_secret is None:
            raise _OAuthError("invalid_client", "introspection requires a confidential client", 401)
        token = form.get("token")
        if not token:
            raise _OAuthError("invalid_request", "token is required")
        body: dict[str, Any] = {"active": False}
        if (access := self._access.get(token)) is not None and self._active(access):
            body = {
                "active": True,
                "client_id": access.family.client_id,
                "token_type": "Bearer",
                "exp": int(access.expires_at),
                "iat": int(access.issued_at),
                "iss": self.issuer,
            }
            if access.scope is not None:
                body["scope"] = access.scope
            if access.resource is not None:
                body["aud"] = access.resource
        elif (refresh := self._refresh.get(token)) is not None and self._refresh_usable(refresh):
            body = {
                "active": True,
                "client_id": refresh.family.client_id,
                "iat": int(refresh.issued_at),
                "iss": self.issuer,
            }
            if refresh.scope is not None:
                body["scope"] = refresh.scope
            if refresh.resource is not None:
                body["aud"] = refresh.resource
        self._emit("token.introspected", token=token, active=body["active"])
        return _json_response(200, body, _NO_STORE)

    def _registration_endpoint(self, request: CoreRequest) -> CoreResponse:
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise _OAuthError("invalid_request", "registration requires application/json")
        try:
            metadata = json.loads(request.body)
        except ValueError as exc:
            raise _OAuthError("invalid_request", "body is not valid JSON") from exc
        if not isinstance(metadata, dict):
            raise _OAuthError("invalid_client_metadata", "metadata must be a JSON object")
        redirect_uris = metadata.get("redirect_uris", [])
        if not isinstance(redirect_uris, list) or not all(
            isinstance(u, str) and urlsplit(u).scheme and not urlsplit(u).fragment
            for u in redirect_uris
        ):
            raise _OAuthError("invalid_redirect_uri", "redirect_uris must be absolute URIs")
        method = metadata.get("token_endpoint_auth_method", "client_secret_basic")
        grant_types = metadata.get("grant_types", ["authorization_code", "refresh_token"])
        scope = metadata.get("scope")
        name = metadata.get("client_name")
        if method not in _AUTH_METHODS:
            raise _OAuthError("invalid_client_metadata", f"unsupported auth method {method!r}")
        if not isinstance(grant_types, list) or not all(g in _GRANT_TYPES for g in grant_types):
            raise _OAuthError("invalid_client_metadata", "unsupported grant_types")
        if method == "none" and "client_credentials" in grant_types:
            raise _OAuthError(
                "invalid_client_metadata", "public clients cannot use client_credentials"
            )
        if "authorization_code" in grant_types and not redirect_uris:
            raise _OAuthError("invalid_redirect_uri", "authorization_code requires redirect_uris")
        if scope is not None and (
            not isinstance(scope, str)
            or not _scopes(scope)
            or not set(_scopes(scope)) <= set(self.scopes_supported)
        ):
            raise _OAuthError("invalid_client_metadata", "unsupported scope")
        if name is not None and not isinstance(name, str):
            raise _OAuthError("invalid_client_metadata", "client_name must be a string")
        record = self.register_client(
            redirect_uris=redirect_uris,
            token_endpoint_auth_method=method,
            grant_types=grant_types,
            scope=scope,
            client_name=name,
        )
        body = record.to_json()
        body["client_id_issued_at"] = int(self.clock.time())
        return _json_response(201, body, _NO_STORE)

    # ---- /_freshtoken/ control endpoints -----------------------------------------------------

    def _control(self, request: CoreRequest, name: str) -> CoreResponse:
        host = urlsplit("//" + (request.header("Host") or "")).hostname or ""
        if not is_loopback_host(host) and host != urlsplit(self.issuer).hostname:
            return _json_response(
                403, {"error": "forbidden", "error_description": "non-local Host"}
            )
        allowed = _CONTROL_METHODS.get(name)
        if allowed is None:
            return _json_response(404, {"error": "not_found", "error_description": request.path})
        if request.method not in allowed:
            response = _json_response(405, {"error": "method_not_allowed"})
            response.headers["Allow"] = ", ".join(allowed)
            return response
        try:
            args = _json_object(request.body) if request.method == "POST" else {}
            result = self._control_action(name, args)
        except _UnknownTokenError as exc:
            return _json_response(404, {"error": "unknown_token", "error_description": str(exc)})
        except (ConfigError, TypeError) as exc:
            return _json_response(400, {"error": "invalid_request", "error_description": str(exc)})
        return _json_response(200, result)

    def _control_action(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if name == "rotate":
            self.rotate()
        elif name in ("expire", "revoke"):
            token = args.get("token")
            if not isinstance(token, str):
                raise ConfigError('body must be {"token": "..."}')
            (self.expire if name == "expire" else self.revoke_family)(token)
        elif name == "faults":
            self.fail_next(**args)
            return {"faults_pending": self.faults_pending}
        elif name == "policy":
            self.policy.update(args)
            return self.policy.to_json()
        elif name == "issue":
            pair = self.issue_tokens(
                args.get("client_id"), scope=args.get("scope"), resource=args.get("resource")
            )
            return pair.to_json()
        elif name == "stats":
            return self.stats()
        return {"ok": True}

    def stats(self) -> dict[str, Any]:
        """Counters for tests and other-language clients (``GET /_freshtoken/stats``)."""
        with self._lock:
            return {
                "token_requests": self.token_requests,
                "token_requests_by_grant": {
                    grant or "(none)": count for grant, count in self._seen_by_grant.items()
                },
                "authorizations": self._authorizations,
                "faults_pending": self.faults_pending,
                "access_tokens_issued": len(self._access),
                "refresh_tokens_issued": len(self._refresh),
                "clients": len(self._clients),
                "errors": len(self.errors),
            }

    # ---- token bookkeeping -----------------------------------------------------------------

    def _new_family(self, client_id: str) -> _Family:
        return _Family(id=secrets.token_hex(4), client_id=client_id)

    def _issue(
        self,
        family: _Family,
        scope: str | None,
        resource: str | None,
        *,
        grant_type: str,
        with_refresh: bool,
    ) -> TokenPair:
        now = self.clock.time()
        ttl = self.policy.access_ttl
        access_token = secrets.token_urlsafe(32)
        self._access[access_token] = _Access(family, scope, resource, now, now + ttl)
        refresh_token = None
        if with_refresh:
            refresh_token = secrets.token_urlsafe(32)
            self._refresh[refresh_token] = _Refresh(family, scope, resource, now)
        self._emit(
            "token.issued",
            token=access_token,
            refresh=fingerprint(refresh_token),
            family=family.id,
            grant_type=grant_type,
            client_id=family.client_id,
            expires_at=now + ttl,
        )
        return TokenPair(
            access_token=access_token,
            refresh_token=refresh_token,
            expires_in=int(ttl) if self.policy.report_expires_in else None,
            scope=scope,
        )

    def _active(self, access: _Access) -> bool:
        return (
            not access.revoked
            and not access.family.revoked
            and self.clock.time() < access.expires_at
        )

    def _refresh_usable(self, refresh: _Refresh) -> bool:
        if refresh.family.revoked or refresh.expired:
            return False
        if refresh.superseded_at is None:
            return True
        return self.clock.time() - refresh.superseded_at < self.policy.grace_period

    def _family_of(self, token: str) -> _Family | None:
        if (access := self._access.get(token)) is not None:
            return access.family
        if (refresh := self._refresh.get(token)) is not None:
            return refresh.family
        return None

    def _revoke(self, family: _Family, *, reason: str) -> None:
        family.revoked = True
        self._emit("family.revoked", family=family.id, reason=reason)

    def _next_fault(self) -> _Fault | None:
        if not self._faults:
            return None
        queued = self._faults[0]
        queued.remaining -= 1
        if queued.remaining == 0:
            self._faults.popleft()
        return queued.fault

    @contextmanager
    def _buffered_events(self) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        # Events a token request causes are recorded after its token.request event.
        self._pending = []
        try:
            yield self._pending
        finally:
            self._pending = None

    def _emit(self, kind: str, *, token: str | None = None, **detail: Any) -> None:
        if self._pending is not None:
            self._pending.append((kind, {"token": token, **detail}))
        else:
            self.timeline.record(ACTOR, kind, token=token, **detail)


def _parse_unique(query: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(
            query, keep_blank_values=True, strict_parsing=bool(query), errors="strict"
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise _OAuthError("invalid_request", "malformed parameters") from exc
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            # RFC 6749 §3.1/§3.2: parameters must not be repeated.
            raise _OAuthError("invalid_request", f"parameter {key!r} repeated")
        params[key] = value
    return params


def _parse_form(request: CoreRequest) -> dict[str, str]:
    content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise _OAuthError("invalid_request", "body must be application/x-www-form-urlencoded")
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _OAuthError("invalid_request", "body is not UTF-8") from exc
    return _parse_unique(text)


def _decode_basic(authorization: str) -> tuple[str, str]:
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise _OAuthError("invalid_client", "unsupported authentication scheme", 401)
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise _OAuthError("invalid_client", "malformed Basic credentials", 401) from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise _OAuthError("invalid_client", "malformed Basic credentials", 401)
    # RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
    return unquote_plus(client_id), unquote_plus(secret)


def _basic_client_id(request: CoreRequest) -> str | None:
    authorization = request.header("Authorization")
    if authorization is None:
        return None
    try:
        return _decode_basic(authorization)[0]
    except _OAuthError:
        return None


def _json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise ConfigError("body is not valid JSON") from exc
    if not isinstance(value, dict):
        raise ConfigError("body must be a JSON object")
    return value
