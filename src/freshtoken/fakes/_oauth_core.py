"""The fake OAuth authorization server's protocol logic, free of sockets and web frameworks.

:class:`OAuthCore` answers :class:`CoreRequest` with :class:`CoreResponse`; the aiohttp and respx
adapters only translate. The core wires the parts together — the token store, the grants, the
other endpoints, token-endpoint faults and the ``/_freshtoken/`` controls — and keeps the record
of what it saw. Everything the server does is recorded on the timeline (actor ``"as"``) with
tokens as fingerprints.
"""

from __future__ import annotations

import json
import threading
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from freshtoken._clock import Clock, SystemClock
from freshtoken._errors import ConfigError, ServerSideError
from freshtoken._schema import parse
from freshtoken._serve import is_loopback_host
from freshtoken._timeline import Timeline, fingerprint
from freshtoken.fakes._oauth_endpoints import Endpoints
from freshtoken.fakes._oauth_faults import TokenFault, TokenFaultQueue
from freshtoken.fakes._oauth_grants import Grants, basic_client_id, parse_form
from freshtoken.fakes._oauth_models import (
    ACTOR,
    AUTH_METHODS,
    AUTHORIZE_PATH,
    CONTROL_PREFIX,
    INTROSPECTION_PATH,
    METADATA_PATH,
    NO_STORE,
    OPENID_CONFIGURATION_PATH,
    REGISTRATION_PATH,
    REVOCATION_PATH,
    TOKEN_PATH,
    ClientRecord,
    CoreRequest,
    CoreResponse,
    OAuthError,
    Recorder,
    SeenTokenRequest,
    TokenInfo,
    TokenPair,
    TokenPolicy,
    json_response,
)
from freshtoken.fakes._oauth_store import KEEP_TOKENS, TokenStore, UnknownTokenError
from freshtoken.fakes._spec import Spec

__all__ = ["OAuthCore"]

Endpoint = Callable[[CoreRequest], CoreResponse]
Control = Callable[[dict[str, Any], str], dict[str, Any]]


class _TokenArgs(Spec):
    token: str


class _IssueArgs(Spec):
    client_id: str | None = None
    scope: str | None = None
    resource: str | None = None


class OAuthCore:
    """The fake authorization server's state and protocol: tokens, clients, policy, faults.

    One pre-registered confidential client (:attr:`client_id`, :attr:`client_secret`) may use
    every grant. ``scopes_supported`` bounds what may be requested (else ``invalid_scope``).
    ``max_seen`` bounds the record :meth:`token_requests_seen` returns (the newest are kept;
    :meth:`stats` counts every request); ``keep_tokens`` how many access and refresh tokens are
    held before the oldest unusable ones are forgotten. ``token_endpoint_auth_methods`` restricts (and
    advertises) how clients may authenticate; ``metadata_paths`` where the RFC 8414 document
    is served (the OAuth well-known path, the OpenID configuration path, or both). Public
    methods are safe to call from any thread while a server runs on another.
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
        keep_tokens: int = KEEP_TOKENS,
        token_endpoint_auth_methods: Sequence[str] = AUTH_METHODS,
        metadata_paths: Sequence[str] = (METADATA_PATH,),
    ) -> None:
        methods, paths = set(token_endpoint_auth_methods), set(metadata_paths)
        if not methods or not methods <= set(AUTH_METHODS):
            raise ConfigError(
                f"token_endpoint_auth_methods: a non-empty subset of {', '.join(AUTH_METHODS)}"
            )
        if not paths or not paths <= {METADATA_PATH, OPENID_CONFIGURATION_PATH}:
            raise ConfigError(
                f"metadata_paths: a non-empty subset of {METADATA_PATH}, {OPENID_CONFIGURATION_PATH}"
            )
        self.issuer = issuer
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.timeline = timeline if timeline is not None else Timeline(self.clock)
        self.policy = policy if policy is not None else TokenPolicy()
        self.token_requests = 0
        self.errors: list[BaseException] = []
        self._lock = threading.RLock()
        self._recorder = Recorder(self.timeline)
        self._store = TokenStore(
            clock=self.clock, policy=lambda: self.policy, recorder=self._recorder, keep=keep_tokens
        )
        self._grants = Grants(
            self._store,
            clock=self.clock,
            policy=lambda: self.policy,
            recorder=self._recorder,
            scopes_supported=scopes_supported,
            auth_methods=token_endpoint_auth_methods,
            audiences=lambda: (self.issuer, self.issuer.rstrip("/") + TOKEN_PATH),
        )
        self._endpoints = Endpoints(
            self._store,
            self._grants,
            clock=self.clock,
            recorder=self._recorder,
            issuer=lambda: self.issuer,
        )
        self._faults = TokenFaultQueue()
        # The oracle's record is bounded: a long-running server keeps the newest requests, and
        # the counters beside it stay exact however many were dropped.
        self._seen: deque[SeenTokenRequest] = deque(maxlen=max_seen)
        self._seen_by_grant: dict[str | None, int] = {}
        self._routes: dict[str, tuple[tuple[str, ...], Endpoint]] = {
            **{path: (("GET",), self._metadata_endpoint) for path in metadata_paths},
            AUTHORIZE_PATH: (("GET",), self._endpoints.authorize),
            TOKEN_PATH: (("POST",), self._token_endpoint),
            REVOCATION_PATH: (("POST",), self._endpoints.revoke),
            INTROSPECTION_PATH: (("POST",), self._endpoints.introspect),
            REGISTRATION_PATH: (("POST",), self._endpoints.register),
        }
        self._controls: dict[str, tuple[tuple[str, ...], Control]] = {
            "rotate": (("POST",), self._control_rotate),
            "expire": (("POST",), self._control_expire),
            "revoke": (("POST",), self._control_revoke),
            "faults": (("POST",), self._control_faults),
            "issue": (("POST",), self._control_issue),
            "policy": (("GET", "POST"), self._control_policy),
            "stats": (("GET",), lambda args, source: self.stats()),
        }
        default = self.register_client(token_endpoint_auth_method="client_secret_basic")
        self.client_id = default.client_id
        self.client_secret: str = default.client_secret or ""

    @property
    def scopes_supported(self) -> tuple[str, ...]:
        return self._grants.scopes_supported

    @property
    def deny_consent(self) -> bool:
        """True: ``/authorize`` redirects back with ``access_denied``, as a user who said no."""
        return self._endpoints.deny_consent

    @deny_consent.setter
    def deny_consent(self, value: bool) -> None:
        self._endpoints.deny_consent = value

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
        public_key_pem: str | None = None,
    ) -> ClientRecord:
        """Register a client and return it; a confidential client gets a secret if none is given
        (a ``private_key_jwt`` one gets none: it names its ``public_key_pem``). ``grant_types``
        defaults to every grant the client type may use (public clients: no client_credentials).
        """
        with self._lock:
            return self._store.register_client(
                redirect_uris=redirect_uris,
                token_endpoint_auth_method=token_endpoint_auth_method,
                grant_types=grant_types,
                scope=scope,
                client_name=client_name,
                client_id=client_id,
                client_secret=client_secret,
                public_key_pem=public_key_pem,
            )

    def client(self, client_id: str) -> ClientRecord | None:
        """The registered client ``client_id``, or None."""
        with self._lock:
            return self._store.clients.get(client_id)

    def issue_tokens(
        self, client_id: str | None = None, *, scope: str | None = None, resource: str | None = None
    ) -> TokenPair:
        """Mint an access + refresh token pair in a new family, as if a grant had just succeeded
        (seeding is a test's prerogative: ``scope`` and ``resource`` are taken as given)."""
        with self._lock:
            owner = client_id or self.client_id
            if owner not in self._store.clients:
                raise ConfigError(f"unknown client {owner!r}")
            family = self._store.new_family(owner)
            return self._store.issue(family, scope, resource, grant_type="seed", with_refresh=True)

    def validate_access_token(self, token: str) -> TokenInfo | None:
        """What the server knows of a currently valid access token; None if unknown/expired/revoked."""
        with self._lock:
            return self._store.validate_access_token(token)

    def rotate(self) -> None:
        """Invalidate every currently valid access token now; refresh tokens stay valid."""
        with self._lock:
            self._store.rotate()

    def expire(self, token: str) -> None:
        """Expire one access or refresh token now."""
        with self._lock:
            self._store.expire(token)

    def revoke_family(self, token: str) -> None:
        """Revoke every token of the grant family that ``token`` (access or refresh) belongs to."""
        with self._lock:
            self._store.revoke_family(token)

    def fail_next(
        self,
        times: int = 1,
        *,
        status: int = 503,
        error: str | None = "temporarily_unavailable",
        delay: float = 0.0,
        reset: bool = False,
        garbage: bool = False,
        lose_response: bool = False,
        must_fire: bool = True,
    ) -> None:
        """Fault the next ``times`` token-endpoint requests (queued after faults already pending).

        See :class:`~freshtoken.fakes.TokenFault` for each argument; a bad value raises
        :class:`ConfigError` (``fail_next: <argument>: <reason>``). ``must_fire=False``: see
        :meth:`unfired_token_faults`.
        """
        args = {"times": times, "status": status, "error": error, "delay": delay}
        flags = {"reset": reset, "garbage": garbage, "lose_response": lose_response}
        fault: TokenFault = parse(TokenFault, {**args, **flags}, source="fail_next")
        self.add_token_fault(fault, must_fire=must_fire)

    def add_token_fault(self, fault: TokenFault, *, must_fire: bool = True) -> None:
        """Queue ``fault`` for the next token-endpoint requests, after faults already pending."""
        self._faults.add(fault, must_fire=must_fire)

    def unfired_token_faults(self) -> list[TokenFault]:
        """Queued faults no request met yet, but those added with ``must_fire=False`` (the pytest
        fixtures fail a test that leaves one)."""
        return self._faults.unfired()

    @property
    def faults_pending(self) -> int:
        """How many token requests the queued faults will still affect."""
        return self._faults.pending

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
            return self._endpoints.authorizations

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
        return self._endpoints.metadata()

    def stats(self) -> dict[str, Any]:
        """Counters for tests and other-language clients (``GET /_freshtoken/stats``)."""
        with self._lock:
            return {
                "token_requests": self.token_requests,
                "token_requests_by_grant": {
                    grant or "(none)": count for grant, count in self._seen_by_grant.items()
                },
                "authorizations": self._endpoints.authorizations,
                "faults_pending": self.faults_pending,
                "access_tokens_issued": self._store.issued_access,
                "refresh_tokens_issued": self._store.issued_refresh,
                "access_tokens_held": len(self._store.access),
                "refresh_tokens_held": len(self._store.refresh),
                "clients": len(self._store.clients),
                "errors": len(self.errors),
            }

    # ---- HTTP ------------------------------------------------------------------------------

    def handle(self, request: CoreRequest) -> CoreResponse:
        """Answer one HTTP request. Never raises: a crash becomes a 500 and is kept for :meth:`check`."""
        with self._lock:
            try:
                return self._route(request)
            except Exception as exc:
                self.errors.append(exc)
                self._recorder.drop()
                self.timeline.record(
                    ACTOR,
                    "server.error",
                    status=500,
                    path=request.path,
                    error=repr(exc),
                    where=traceback.format_exception(exc)[-1].strip(),
                )
                return json_response(
                    500,
                    {"error": "server_error", "error_description": "unexpected server error"},
                    NO_STORE,
                )

    def _route(self, request: CoreRequest) -> CoreResponse:
        path = request.path
        if path.startswith(CONTROL_PREFIX):
            return self._control(request, path.removeprefix(CONTROL_PREFIX))
        if path not in self._routes:
            return json_response(404, {"error": "not_found", "error_description": path})
        methods, endpoint = self._routes[path]
        if request.method not in methods:
            response = OAuthError(
                "invalid_request", f"{request.method} is not allowed here", 405
            ).response()
            response.headers["Allow"] = ", ".join(methods)
            return response
        try:
            return endpoint(request)
        except OAuthError as exc:
            return exc.response()

    def _metadata_endpoint(self, request: CoreRequest) -> CoreResponse:
        return json_response(200, self.metadata())

    def _token_endpoint(self, request: CoreRequest) -> CoreResponse:
        self.token_requests += 1
        fault = self._faults.next()
        form: dict[str, str] = {}
        form_error: OAuthError | None = None
        try:
            form = parse_form(request)
        except OAuthError as exc:
            form_error = exc
        grant_type = form.get("grant_type")
        client_id = basic_client_id(request) or form.get("client_id")
        presented = fingerprint(form.get("refresh_token"))

        if fault is not None and not fault.passes_through and not fault.lose_response:
            response = fault.response()
            status = None if fault.reset else fault.status
            self._saw(grant_type, client_id, status, "fault", presented)
            self.timeline.record(
                ACTOR, "token.request", status=status, grant_type=grant_type, client_id=client_id
            )
            self.timeline.record(ACTOR, "fault", status=status, what=fault.what, delay=fault.delay)
            return response

        error: str | None = None
        with self._recorder.buffered() as events:
            try:
                if form_error is not None:
                    raise form_error
                response = self._grants.grant(request, form)
            except OAuthError as exc:
                error = exc.error
                response = exc.response()
                detail = {"grant_type": grant_type, "client_id": client_id}
                events.append(("token.refused", {"status": exc.status, "error": error, **detail}))
        if fault is not None and fault.lose_response:
            # Processed (a refresh token rotated, as the timeline says), then the answer is lost:
            # the client saw no status at all.
            self._saw(grant_type, client_id, None, "fault", presented)
        else:
            self._saw(grant_type, client_id, response.status, error, presented)
        self.timeline.record(
            ACTOR,
            "token.request",
            status=response.status,
            grant_type=grant_type,
            client_id=client_id,
        )
        self._recorder.flush(events)
        if fault is not None and fault.lose_response:
            self.timeline.record(ACTOR, "fault", what=fault.what, delay=fault.delay)
            return CoreResponse(0, delay=fault.delay, reset=True)
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

    # ---- /_freshtoken/ control endpoints -----------------------------------------------------

    def _control(self, request: CoreRequest, name: str) -> CoreResponse:
        host = urlsplit("//" + (request.header("Host") or "")).hostname or ""
        if not is_loopback_host(host) and host != urlsplit(self.issuer).hostname:
            return json_response(403, {"error": "forbidden", "error_description": "non-local Host"})
        control = self._controls.get(name)
        if control is None:
            return json_response(404, {"error": "not_found", "error_description": request.path})
        allowed, handler = control
        if request.method not in allowed:
            response = json_response(405, {"error": "method_not_allowed"})
            response.headers["Allow"] = ", ".join(allowed)
            return response
        source = f"{request.method} {request.path}"
        try:
            args = _json_object(request.body, source) if request.method == "POST" else {}
            result = handler(args, source)
        except UnknownTokenError as exc:
            return json_response(404, {"error": "unknown_token", "error_description": str(exc)})
        except ConfigError as exc:
            return json_response(400, {"error": "invalid_request", "error_description": str(exc)})
        return json_response(200, result)

    def _control_rotate(self, args: dict[str, Any], source: str) -> dict[str, Any]:
        parse(_NoArgs, args, source=source)
        self.rotate()
        return {"ok": True}

    def _control_expire(self, args: dict[str, Any], source: str) -> dict[str, Any]:
        self.expire(parse(_TokenArgs, args, source=source).token)
        return {"ok": True}

    def _control_revoke(self, args: dict[str, Any], source: str) -> dict[str, Any]:
        self.revoke_family(parse(_TokenArgs, args, source=source).token)
        return {"ok": True}

    def _control_faults(self, args: dict[str, Any], source: str) -> dict[str, Any]:
        self.add_token_fault(parse(TokenFault, args, source=source))
        return {"faults_pending": self.faults_pending}

    def _control_issue(self, args: dict[str, Any], source: str) -> dict[str, Any]:
        issue: _IssueArgs = parse(_IssueArgs, args, source=source)
        pair = self.issue_tokens(issue.client_id, scope=issue.scope, resource=issue.resource)
        return pair.to_json()

    def _control_policy(self, args: dict[str, Any], source: str) -> dict[str, Any]:
        if args:
            self.policy.update(args, source=source)
        return self.policy.to_json()


class _NoArgs(Spec):
    pass


def _json_object(body: bytes, source: str) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except ValueError:
        raise ConfigError.at(source, "(body)", "not valid JSON") from None
    if not isinstance(value, dict):
        raise ConfigError.at(source, "(body)", "must be a JSON object")
    return value
