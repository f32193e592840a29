"""The fake authorization server's endpoints besides ``/token``: RFC 8414 metadata, the
auto-approving ``/authorize``, RFC 7009 revocation, RFC 7662 introspection, RFC 7591 registration.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlencode, urlsplit, urlunsplit

from freshtoken._clock import Clock
from freshtoken._errors import ConfigError
from freshtoken.fakes._oauth_grants import Grants, parse_form, parse_unique
from freshtoken.fakes._oauth_jwt import SIGNING_ALGORITHMS, public_key_from_jwks
from freshtoken.fakes._oauth_models import (
    AUTHORIZE_PATH,
    GRANT_TYPES,
    INTROSPECTION_PATH,
    NO_STORE,
    REGISTRATION_PATH,
    REVOCATION_PATH,
    TOKEN_PATH,
    ClientRecord,
    CoreRequest,
    CoreResponse,
    OAuthError,
    Recorder,
    json_response,
    scopes,
)
from freshtoken.fakes._oauth_store import Code, TokenStore

__all__ = ["Endpoints"]

_CODE_TTL: Final = 600.0


class Endpoints:
    """Every endpoint but ``/token``, over the server's store and grants."""

    def __init__(
        self,
        store: TokenStore,
        grants: Grants,
        *,
        clock: Clock,
        recorder: Recorder,
        issuer: Callable[[], str],
    ) -> None:
        self._store = store
        self._grants = grants
        self._clock = clock
        self._recorder = recorder
        self._issuer = issuer
        self.authorizations = 0
        """``/authorize`` requests answered with a code."""
        self.deny_consent = False
        """Answer every authorization request as a user who clicked "deny" would."""

    def metadata(self) -> dict[str, Any]:
        """The RFC 8414 authorization server metadata document."""
        issuer = self._issuer()
        base = issuer.rstrip("/")
        auth_methods = list(self._grants.auth_methods)
        return {
            "issuer": issuer,
            "authorization_endpoint": base + AUTHORIZE_PATH,
            "token_endpoint": base + TOKEN_PATH,
            "revocation_endpoint": base + REVOCATION_PATH,
            "introspection_endpoint": base + INTROSPECTION_PATH,
            "registration_endpoint": base + REGISTRATION_PATH,
            "scopes_supported": list(self._grants.scopes_supported),
            "response_types_supported": ["code"],
            "grant_types_supported": list(GRANT_TYPES),
            "token_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "introspection_endpoint_auth_methods_supported": [
                m for m in auth_methods if m != "none"
            ],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            **(
                {"token_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGORITHMS)}
                if "private_key_jwt" in auth_methods
                else {}
            ),
        }

    # ---- /authorize ------------------------------------------------------------------------

    def authorize(self, request: CoreRequest) -> CoreResponse:
        params = parse_unique(request.query)
        client = self._store.clients.get(params.get("client_id", ""))
        if client is None:
            raise OAuthError("invalid_request", "unknown or missing client_id")
        redirect_uri = self._redirect_uri(client, params.get("redirect_uri"))
        state = params.get("state")
        issuer = self._issuer()

        def redirect(**result: str) -> CoreResponse:
            if state is not None:
                result["state"] = state
            result["iss"] = issuer
            parts = urlsplit(redirect_uri)
            query = "&".join(q for q in (parts.query, urlencode(result)) if q)
            location = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
            return CoreResponse(302, {"Location": location, **NO_STORE})

        def refuse(error: str, description: str) -> CoreResponse:
            self._recorder.emit("authorize.refused", client_id=client.client_id, error=error)
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
            scope = self._grants.check_scope(client, params.get("scope"))
        except OAuthError as exc:
            return refuse(exc.error, exc.description)
        if self.deny_consent:
            return refuse("access_denied", "the resource owner denied the request")
        code = secrets.token_urlsafe(24)
        self._store.codes[code] = Code(
            client_id=client.client_id,
            redirect_uri=params.get("redirect_uri"),
            code_challenge=challenge,
            scope=scope,
            resource=params.get("resource"),
            expires_at=self._clock.time() + _CODE_TTL,
        )
        self.authorizations += 1
        self._recorder.emit("code.issued", token=code, client_id=client.client_id)
        return redirect(code=code)

    def _redirect_uri(self, client: ClientRecord, given: str | None) -> str:
        if given is None:
            if len(client.redirect_uris) != 1:
                raise OAuthError("invalid_request", "redirect_uri is required")
            return client.redirect_uris[0]
        if client.redirect_uris and given not in client.redirect_uris:
            raise OAuthError("invalid_request", "redirect_uri is not registered for this client")
        if not _absolute_uri(given):
            raise OAuthError("invalid_request", "redirect_uri must be absolute, without fragment")
        return given

    # ---- RFC 7009 revocation, RFC 7662 introspection ---------------------------------------

    def revoke(self, request: CoreRequest) -> CoreResponse:
        form = parse_form(request)
        client = self._grants.authenticate(request, form)
        token = form.get("token")
        if not token:
            raise OAuthError("invalid_request", "token is required")
        family = self._store.family_of(token)
        if family is not None and family.client_id != client.client_id:
            raise OAuthError("invalid_request", "token was issued to another client")
        if (access := self._store.access.get(token)) is not None:
            access.revoked = True
            self._recorder.emit(
                "token.revoked", token=token, type="access", family=access.family.id
            )
        elif family is not None:
            # RFC 7009 §2.1: revoking a refresh token revokes the grant's access tokens too.
            self._recorder.emit("token.revoked", token=token, type="refresh", family=family.id)
            self._store.revoke(family, reason="revocation")
        return CoreResponse(200, dict(NO_STORE))

    def introspect(self, request: CoreRequest) -> CoreResponse:
        form = parse_form(request)
        client = self._grants.authenticate(request, form)
        if client.client_secret is None:
            raise OAuthError("invalid_client", "introspection requires a confidential client", 401)
        token = form.get("token")
        if not token:
            raise OAuthError("invalid_request", "token is required")
        issuer = self._issuer()
        body: dict[str, Any] = {"active": False}
        store = self._store
        if (access := store.access.get(token)) is not None and store.active(access):
            body = {
                "active": True,
                "client_id": access.family.client_id,
                "token_type": "Bearer",
                "exp": int(access.expires_at),
                "iat": int(access.issued_at),
                "iss": issuer,
            }
            if access.scope is not None:
                body["scope"] = access.scope
            if access.resource is not None:
                body["aud"] = access.resource
        elif (refresh := store.refresh.get(token)) is not None and store.refresh_usable(refresh):
            body = {
                "active": True,
                "client_id": refresh.family.client_id,
                "iat": int(refresh.issued_at),
                "iss": issuer,
            }
            if refresh.scope is not None:
                body["scope"] = refresh.scope
            if refresh.resource is not None:
                body["aud"] = refresh.resource
        self._recorder.emit("token.introspected", token=token, active=body["active"])
        return json_response(200, body, NO_STORE)

    # ---- RFC 7591 registration -------------------------------------------------------------

    def register(self, request: CoreRequest) -> CoreResponse:
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise OAuthError("invalid_request", "registration requires application/json")
        try:
            metadata = json.loads(request.body)
        except ValueError as exc:
            raise OAuthError("invalid_request", "body is not valid JSON") from exc
        if not isinstance(metadata, dict):
            raise OAuthError("invalid_client_metadata", "metadata must be a JSON object")
        redirect_uris = metadata.get("redirect_uris", [])
        if not isinstance(redirect_uris, list) or not all(
            isinstance(u, str) and _absolute_uri(u) for u in redirect_uris
        ):
            raise OAuthError("invalid_redirect_uri", "redirect_uris must be absolute URIs")
        method = metadata.get("token_endpoint_auth_method", "client_secret_basic")
        grant_types = metadata.get("grant_types", ["authorization_code", "refresh_token"])
        scope = metadata.get("scope")
        name = metadata.get("client_name")
        if method not in self._grants.auth_methods:
            raise OAuthError("invalid_client_metadata", f"unsupported auth method {method!r}")
        public_key = None
        if method == "private_key_jwt":
            # RFC 7591 §2: the client's key as a JWK Set (jwks_uri is not fetched).
            try:
                public_key = public_key_from_jwks(metadata.get("jwks"))
            except ConfigError as exc:
                raise OAuthError("invalid_client_metadata", str(exc)) from None
        if not isinstance(grant_types, list) or not all(g in GRANT_TYPES for g in grant_types):
            raise OAuthError("invalid_client_metadata", "unsupported grant_types")
        if method == "none" and "client_credentials" in grant_types:
            raise OAuthError(
                "invalid_client_metadata", "public clients cannot use client_credentials"
            )
        if "authorization_code" in grant_types and not redirect_uris:
            raise OAuthError("invalid_redirect_uri", "authorization_code requires redirect_uris")
        if scope is not None and (
            not isinstance(scope, str)
            or not scopes(scope)
            or not set(scopes(scope)) <= set(self._grants.scopes_supported)
        ):
            raise OAuthError("invalid_client_metadata", "unsupported scope")
        if name is not None and not isinstance(name, str):
            raise OAuthError("invalid_client_metadata", "client_name must be a string")
        record = self._store.register_client(
            redirect_uris=redirect_uris,
            token_endpoint_auth_method=method,
            grant_types=grant_types,
            scope=scope,
            client_name=name,
            public_key_pem=public_key,
        )
        body = record.to_json()
        if public_key is not None:
            body["jwks"] = metadata["jwks"]
        body["client_id_issued_at"] = int(self._clock.time())
        return json_response(201, body, NO_STORE)


def _absolute_uri(uri: str) -> bool:
    """An absolute URI without a fragment that ``urlsplit`` can take apart (``http://[`` cannot)."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018  # a malformed port raises only when read
    except ValueError:
        return False
    return bool(parts.scheme) and not parts.fragment
