"""The fake authorization server's data: policy, token responses, clients, requests, responses.

Also the few helpers every part of the server shares: RFC 6749 error responses, JSON responses,
and the event recorder that keeps a token request's events after its ``token.request`` event.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ConfigDict, ValidationError

from freshtoken._schema import MODEL_CONFIG, Flag, PositiveSeconds, Seconds, config_error, parse
from freshtoken._timeline import Timeline
from freshtoken.fakes._spec import Spec

__all__ = [
    "ACTOR",
    "AUTHORIZE_PATH",
    "AUTH_METHODS",
    "CONTROL_PREFIX",
    "GRANT_TYPES",
    "INTROSPECTION_PATH",
    "METADATA_PATH",
    "NO_STORE",
    "OPENID_CONFIGURATION_PATH",
    "REGISTRATION_PATH",
    "REVOCATION_PATH",
    "TOKEN_PATH",
    "ClientRecord",
    "CoreRequest",
    "CoreResponse",
    "OAuthError",
    "Recorder",
    "SeenTokenRequest",
    "TokenInfo",
    "TokenPair",
    "TokenPolicy",
    "json_response",
    "scopes",
]

ACTOR: Final = "as"
METADATA_PATH: Final = "/.well-known/oauth-authorization-server"
OPENID_CONFIGURATION_PATH: Final = "/.well-known/openid-configuration"
AUTHORIZE_PATH: Final = "/authorize"
TOKEN_PATH: Final = "/token"
REVOCATION_PATH: Final = "/revoke"
INTROSPECTION_PATH: Final = "/introspect"
REGISTRATION_PATH: Final = "/register"
CONTROL_PREFIX: Final = "/_freshtoken/"

GRANT_TYPES: Final = ("authorization_code", "client_credentials", "refresh_token")
AUTH_METHODS: Final = ("client_secret_basic", "client_secret_post", "none", "private_key_jwt")
NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class TokenPolicy(Spec):
    """How the server issues and accepts tokens; mutable while the server runs.

    ``access_ttl`` is in seconds (more than zero); ``grace_period`` is how many seconds a
    superseded refresh token is still accepted (it then yields a fresh pair without triggering
    reuse detection); at exactly ``grace_period`` seconds it is a reuse. Every assignment and
    :meth:`update` is checked like a file would be: a bad value raises
    :class:`~freshtoken.ConfigError` and leaves the policy as it was.
    """

    model_config = MODEL_CONFIG | ConfigDict(frozen=False, validate_assignment=True)

    access_ttl: PositiveSeconds = 3600.0
    report_expires_in: Flag = True
    rotate_refresh_tokens: Flag = True
    reuse_detection: Flag = True
    grace_period: Seconds = 0.0

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise config_error(exc, source="token policy") from None

    def to_json(self) -> dict[str, Any]:
        """The policy as a JSON-ready dict (what ``GET /_freshtoken/policy`` returns)."""
        return self.model_dump(mode="json")

    def update(self, changes: Mapping[str, Any], *, source: str = "token policy") -> None:
        """Apply ``changes`` (field name → value) all at once, or none of them.

        Raises :class:`~freshtoken.ConfigError` as ``<source>: <field>: <reason>``.
        """
        checked: TokenPolicy = parse(TokenPolicy, {**self.to_json(), **changes}, source=source)
        for name in changes:
            setattr(self, name, getattr(checked, name))


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


@dataclass(frozen=True)
class TokenInfo:
    """What the server knows about a valid access token (``resource`` is its RFC 8707 audience)."""

    client_id: str
    scope: str | None
    resource: str | None
    expires_at: float
    family: str


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
class ClientRecord:
    """A registered client. ``client_secret`` is None for public clients (auth method ``none``)
    and for clients that authenticate with a key (``private_key_jwt``).

    A client with no ``redirect_uris`` accepts any absolute redirect URI, which keeps ad-hoc test
    clients short; registered URIs must match exactly.
    """

    client_id: str
    client_secret: str | None
    redirect_uris: tuple[str, ...] = ()
    token_endpoint_auth_method: str = "client_secret_basic"
    grant_types: tuple[str, ...] = GRANT_TYPES
    scope: str | None = None
    client_name: str | None = None
    public_key_pem: str | None = None
    """With ``private_key_jwt``: the public key its assertions are checked with (PEM)."""

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


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> CoreResponse:
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return CoreResponse(status, all_headers, json.dumps(body).encode())


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: raised anywhere in an endpoint, answered as its JSON body."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def response(self) -> CoreResponse:
        headers = dict(NO_STORE)
        if self.status == 401:
            # RFC 6749 §5.2 requires the challenge when the client used the Authorization header;
            # RFC 9110 requires one on every 401, so it is always present.
            headers["WWW-Authenticate"] = 'Basic realm="freshtoken"'
        return json_response(
            self.status, {"error": self.error, "error_description": self.description}, headers
        )


def scopes(scope: str | None) -> list[str]:
    """The space-separated scope list (RFC 6749 §3.3)."""
    return scope.split() if scope else []


class Recorder:
    """Records the server's events on the timeline (actor ``"as"``), tokens as fingerprints.

    While :meth:`buffered` is open, events are held back, so what a token request causes is
    recorded after the ``token.request`` event that names its outcome.
    """

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self._pending: list[tuple[str, dict[str, Any]]] | None = None

    def emit(self, kind: str, *, token: str | None = None, **detail: Any) -> None:
        if self._pending is not None:
            self._pending.append((kind, {"token": token, **detail}))
        else:
            self.timeline.record(ACTOR, kind, token=token, **detail)

    def record(self, kind: str, **detail: Any) -> None:
        """Record at once, even while buffering."""
        self.timeline.record(ACTOR, kind, **detail)

    @contextmanager
    def buffered(self) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        self._pending = []
        try:
            yield self._pending
        finally:
            self._pending = None

    def flush(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        for kind, detail in events:
            self.timeline.record(ACTOR, kind, **detail)

    def drop(self) -> None:
        """Forget what is buffered (a request crashed half way)."""
        self._pending = None
