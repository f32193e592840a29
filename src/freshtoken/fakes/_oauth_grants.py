"""The token endpoint's grants (RFC 6749 §4.1, §4.4, §6 with PKCE) and client authentication."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Callable, Sequence
from typing import Final
from urllib.parse import parse_qsl, unquote_plus

from freshtoken._clock import Clock
from freshtoken._timeline import fingerprint
from freshtoken.fakes._oauth_jwt import AssertionChecker
from freshtoken.fakes._oauth_models import (
    AUTH_METHODS,
    GRANT_TYPES,
    NO_STORE,
    ClientRecord,
    CoreRequest,
    CoreResponse,
    OAuthError,
    Recorder,
    TokenPair,
    TokenPolicy,
    json_response,
    scopes,
)
from freshtoken.fakes._oauth_store import TokenStore

__all__ = ["Grants", "basic_client_id", "parse_form", "parse_unique"]

# RFC 7636 §4.1: 43-128 characters from the unreserved set.
_VERIFIER_RE: Final = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def parse_unique(query: str) -> dict[str, str]:
    """Form or query parameters; malformed or repeated ones are ``invalid_request``."""
    try:
        pairs = parse_qsl(
            query, keep_blank_values=True, strict_parsing=bool(query), errors="strict"
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise OAuthError("invalid_request", "malformed parameters") from exc
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            # RFC 6749 §3.1/§3.2: parameters must not be repeated.
            raise OAuthError("invalid_request", f"parameter {key!r} repeated")
        params[key] = value
    return params


def parse_form(request: CoreRequest) -> dict[str, str]:
    content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "body must be application/x-www-form-urlencoded")
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OAuthError("invalid_request", "body is not UTF-8") from exc
    return parse_unique(text)


def _decode_basic(authorization: str) -> tuple[str, str]:
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError("invalid_client", "unsupported authentication scheme", 401)
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise OAuthError("invalid_client", "malformed Basic credentials", 401) from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise OAuthError("invalid_client", "malformed Basic credentials", 401)
    # RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
    return unquote_plus(client_id), unquote_plus(secret)


def basic_client_id(request: CoreRequest) -> str | None:
    """The client id of the request's Basic credentials, if they decode."""
    authorization = request.header("Authorization")
    if authorization is None:
        return None
    try:
        return _decode_basic(authorization)[0]
    except OAuthError:
        return None


class Grants:
    """Client authentication and the three grants, over a :class:`TokenStore`."""

    def __init__(
        self,
        store: TokenStore,
        *,
        clock: Clock,
        policy: Callable[[], TokenPolicy],
        recorder: Recorder,
        scopes_supported: Sequence[str],
        auth_methods: Sequence[str] = AUTH_METHODS,
        audiences: Callable[[], Sequence[str]] = tuple,
    ) -> None:
        self._store = store
        self._clock = clock
        self._policy = policy
        self._recorder = recorder
        self.scopes_supported = tuple(scopes_supported)
        self.auth_methods = tuple(auth_methods)
        self._assertions = AssertionChecker(clock=clock, audiences=audiences)

    def grant(self, request: CoreRequest, form: dict[str, str]) -> CoreResponse:
        """Answer a parsed token request (raises :class:`OAuthError` to refuse it)."""
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError("invalid_request", "grant_type is required")
        client = self.authenticate(request, form)
        if grant_type not in GRANT_TYPES:
            raise OAuthError(
                "unsupported_grant_type", f"grant_type {grant_type!r} is not supported"
            )
        if grant_type not in client.grant_types:
            raise OAuthError("unauthorized_client", f"client may not use {grant_type}")
        if grant_type == "refresh_token":
            pair = self._refresh_grant(client, form)
        elif grant_type == "client_credentials":
            pair = self._client_credentials_grant(client, form)
        else:
            pair = self._authorization_code_grant(client, form)
        return json_response(200, pair.to_json(), NO_STORE)

    def authenticate(self, request: CoreRequest, form: dict[str, str]) -> ClientRecord:
        """The client the request authenticates as (Basic, form post, a signed assertion, or a
        public client id)."""
        if "client_assertion" in form or "client_assertion_type" in form:
            return self._asserted(request, form)
        authorization = request.header("Authorization")
        secret: str | None
        if authorization is not None:
            client_id, secret = _decode_basic(authorization)
            if "client_secret" in form:
                raise OAuthError("invalid_request", "use one client authentication method")
            if form.get("client_id", client_id) != client_id:
                raise OAuthError("invalid_request", "client_id does not match the credentials")
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret")
        # A server that supports fewer methods refuses the others (it cannot verify them).
        method = (
            "client_secret_basic"
            if authorization is not None
            else "client_secret_post"
            if secret is not None
            else "none"
        )
        if method not in self.auth_methods:
            raise OAuthError("invalid_client", f"{method} is not supported here", 401)
        client = self._store.clients.get(client_id)
        if client is None:
            raise OAuthError("invalid_client", "client authentication failed", 401)
        if client.client_secret is None:
            if secret is not None:
                raise OAuthError("invalid_client", "public client sent a secret", 401)
        elif secret is None or not secrets.compare_digest(
            secret.encode(), client.client_secret.encode()
        ):
            raise OAuthError("invalid_client", "client authentication failed", 401)
        return client

    def _asserted(self, request: CoreRequest, form: dict[str, str]) -> ClientRecord:
        if "private_key_jwt" not in self.auth_methods:
            raise OAuthError("invalid_client", "private_key_jwt is not supported here", 401)
        if request.header("Authorization") is not None or "client_secret" in form:
            raise OAuthError("invalid_request", "use one client authentication method")
        client = self._store.clients.get(self._assertions.client_id(form))
        if client is None:
            raise OAuthError("invalid_client", "client authentication failed", 401)
        self._assertions.check(client, form)
        return client

    def check_scope(self, client: ClientRecord, requested: str | None) -> str | None:
        """The scope to grant; ``invalid_scope`` when it asks for more than the client may."""
        if requested is None:
            return client.scope
        wanted = scopes(requested)
        allowed = set(scopes(client.scope)) if client.scope else set(self.scopes_supported)
        unknown = [s for s in wanted if s not in allowed]
        if not wanted or unknown:
            raise OAuthError(
                "invalid_scope", f"scope not allowed: {' '.join(unknown) or '(empty)'}"
            )
        return " ".join(wanted)

    def _refresh_grant(self, client: ClientRecord, form: dict[str, str]) -> TokenPair:
        token = form.get("refresh_token")
        if not token:
            raise OAuthError("invalid_request", "refresh_token is required")
        refresh = self._store.refresh.get(token)
        if refresh is None or refresh.family.client_id != client.client_id:
            raise OAuthError("invalid_grant", "unknown refresh token")
        family = refresh.family
        if family.revoked:
            raise OAuthError("invalid_grant", "refresh token revoked")
        if refresh.expired:
            raise OAuthError("invalid_grant", "refresh token expired")
        policy = self._policy()
        now = self._clock.time()
        if refresh.superseded_at is not None:
            age = now - refresh.superseded_at
            if age >= policy.grace_period:
                if policy.reuse_detection:
                    self._recorder.emit(
                        "refresh.reuse", token=token, family=family.id, superseded_for=age
                    )
                    self._store.revoke(family, reason="reuse")
                    raise OAuthError("invalid_grant", "refresh token reused; family revoked")
                raise OAuthError("invalid_grant", "refresh token was superseded")
            self._recorder.emit("refresh.grace", token=token, family=family.id, superseded_for=age)
        scope = refresh.scope
        if "scope" in form:
            requested = scopes(form["scope"])
            if not requested or not set(requested) <= set(scopes(refresh.scope)):
                raise OAuthError("invalid_scope", "scope exceeds the original grant")
            scope = " ".join(requested)
        resource = refresh.resource
        if "resource" in form:
            if refresh.resource is not None and form["resource"] != refresh.resource:
                raise OAuthError("invalid_target", "resource differs from the original grant")
            resource = form["resource"]
        rotate = policy.rotate_refresh_tokens
        pair = self._store.issue(
            family, scope, resource, grant_type="refresh_token", with_refresh=rotate
        )
        if rotate and refresh.superseded_at is None:
            refresh.superseded_at = now
            self._recorder.emit(
                "refresh.rotated",
                token=token,
                successor=fingerprint(pair.refresh_token),
                family=family.id,
            )
        return pair

    def _client_credentials_grant(self, client: ClientRecord, form: dict[str, str]) -> TokenPair:
        scope = self.check_scope(client, form.get("scope"))
        family = self._store.new_family(client.client_id)
        return self._store.issue(
            family, scope, form.get("resource"), grant_type="client_credentials", with_refresh=False
        )

    def _authorization_code_grant(self, client: ClientRecord, form: dict[str, str]) -> TokenPair:
        code_value = form.get("code")
        if not code_value:
            raise OAuthError("invalid_request", "code is required")
        code = self._store.codes.get(code_value)
        if code is None or code.client_id != client.client_id:
            raise OAuthError("invalid_grant", "unknown authorization code")
        if code.family is not None:
            # RFC 6749 §4.1.2: a replayed code revokes what it already produced.
            self._store.revoke(code.family, reason="code_reuse")
            raise OAuthError("invalid_grant", "authorization code already used")
        if self._clock.time() >= code.expires_at:
            raise OAuthError("invalid_grant", "authorization code expired")
        if code.redirect_uri is not None and form.get("redirect_uri") != code.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match the authorization")
        verifier = form.get("code_verifier")
        if code.code_challenge is not None:
            if verifier is None:
                raise OAuthError("invalid_request", "code_verifier is required")
            if not _VERIFIER_RE.fullmatch(verifier):
                raise OAuthError("invalid_grant", "malformed code_verifier")
            digest = hashlib.sha256(verifier.encode("ascii")).digest()
            expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
            if not secrets.compare_digest(expected.encode(), code.code_challenge.encode()):
                raise OAuthError("invalid_grant", "code_verifier does not match code_challenge")
        elif verifier is not None:
            raise OAuthError("invalid_grant", "code_verifier sent for a code without PKCE")
        resource = code.resource
        if "resource" in form:
            if code.resource is not None and form["resource"] != code.resource:
                raise OAuthError("invalid_target", "resource differs from the authorization")
            resource = form["resource"]
        code.family = self._store.new_family(client.client_id)
        return self._store.issue(
            code.family, code.scope, resource, grant_type="authorization_code", with_refresh=True
        )
