"""The proxy's TOML configuration file (``freshtoken proxy --config FILE``).

The file's shape is declared once, as pydantic models on the shared schema layer
(:mod:`freshtoken._schema`): one rule per field, unknown keys refused, finite numbers only, and
every problem reported as one line ``<file>: <key path>: <reason>``. The ``[limits]`` table *is*
:class:`~freshtoken.proxy.Limits`; a token table is validated by the model its ``type`` names.
What a model cannot see (environment variables, files, the matcher import) is checked right
after, with the same error format and the exact key.
"""

from __future__ import annotations

import importlib
import os
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, StrictInt

from freshtoken._errors import ConfigError, TokenSourceError
from freshtoken._schema import (
    MODEL_CONFIG,
    Count,
    Flag,
    PositiveCount,
    PositiveSeconds,
    Seconds,
    load_toml,
    parse,
)
from freshtoken._serve import is_loopback_host
from freshtoken._timeline import Timeline
from freshtoken.proxy._endpoint import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_WAIT,
    DEFAULT_TIMEOUT,
)
from freshtoken.proxy._grants import ClientCredentialsSource, RefreshTokenSource
from freshtoken.proxy._jwt import ClientKey
from freshtoken.proxy._limits import Limits
from freshtoken.proxy._login import LoginTarget
from freshtoken.proxy._matcher import AuthFailureMatcher, default_matcher, pattern_matcher
from freshtoken.proxy._oauth_client import LoginError, stored_key
from freshtoken.proxy._proxy import Proxy, valid_target_name
from freshtoken.proxy._store import AuthMethod, TokenStore
from freshtoken.proxy._tokens import (
    CommandTokenSource,
    StaticTokenSource,
    TokenSource,
    valid_access_token,
    valid_refresh_token,
)

__all__ = ["ProxyConfig", "TargetConfig", "load_config", "load_login_targets"]


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """One ``[targets.NAME]`` table, with its token source already built."""

    name: str
    url: str
    source: TokenSource
    ssl_context: ssl.SSLContext | None = None
    allow_insecure_http: bool = False


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """A validated configuration file."""

    path: Path
    host: str
    port: int
    secret: str | None
    allowed_origins: tuple[str, ...]
    limits: Limits
    matcher: AuthFailureMatcher
    targets: tuple[TargetConfig, ...]

    def create_proxy(self, *, timeline: Timeline | None = None) -> Proxy:
        """A (not yet started) :class:`Proxy` with these listen settings and limits."""
        return Proxy(
            host=self.host,
            port=self.port,
            secret=self.secret,
            allowed_origins=self.allowed_origins,
            matcher=self.matcher,
            limits=self.limits,
            timeline=timeline,
        )

    def register_all(self, proxy: Proxy) -> dict[str, str]:
        """Register every target on a running ``proxy``; return name → local URL."""
        return {
            t.name: proxy.register(
                t.name,
                t.url,
                t.source,
                ssl_context=t.ssl_context,
                allow_insecure_http=t.allow_insecure_http,
            )
            for t in self.targets
        }


# ---- field rules ------------------------------------------------------------------------------

# The proxy's own rule for its capability secret: one URL path segment, no escaping needed.
_SECRET: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]*")


def _loopback(host: str) -> str:
    if not is_loopback_host(host):
        raise ValueError(
            f"must be a loopback address (the proxy listens on loopback only), got {host!r}"
        )
    return host


def _url_safe_secret(secret: str) -> str:
    if secret and not _SECRET.fullmatch(secret):
        raise ValueError("must be URL-safe (letters, digits, '-', '_', '.', '~'), or \"\" for none")
    return secret


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http(s) URL, got {url!r}")
    return url


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return pattern


def _dotted(name: str) -> str:
    module, sep, attr = name.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"must be 'module:function', got {name!r}")
    return name


HttpUrl = Annotated[str, AfterValidator(_http_url)]
Text = Annotated[str, Field(min_length=1)]


class _Listen(BaseModel):
    model_config = MODEL_CONFIG

    host: Annotated[str, AfterValidator(_loopback)] = "127.0.0.1"
    port: Annotated[StrictInt, Field(ge=0, le=65535)] = 0
    secret: Annotated[str, AfterValidator(_url_safe_secret)] | None = None
    allowed_origins: tuple[Text, ...] = ()


class _Matcher(BaseModel):
    model_config = MODEL_CONFIG

    patterns: tuple[Annotated[str, AfterValidator(_regex)], ...] = ()
    include_default: Flag = True
    tool_errors: Flag = False
    function: Annotated[str, AfterValidator(_dotted)] | None = None


class _Target(BaseModel):
    model_config = MODEL_CONFIG

    url: HttpUrl
    ca_file: Text | None = None
    allow_insecure_http: Flag = False
    # Validated in a second step by the model its ``type`` names, so errors keep the file's path.
    token: dict[str, Any]


class _File(BaseModel):
    model_config = MODEL_CONFIG

    listen: _Listen = Field(default_factory=_Listen)
    limits: Limits = Field(default_factory=Limits)
    matcher: _Matcher = Field(default_factory=_Matcher)
    targets: Annotated[dict[str, _Target], Field(min_length=1)]


class _StaticToken(BaseModel):
    model_config = MODEL_CONFIG

    type: Literal["static"]
    token: Text | None = None
    token_env: Text | None = None


class _CommandToken(BaseModel):
    model_config = MODEL_CONFIG

    type: Literal["command"]
    command: Annotated[tuple[Text, ...], Field(min_length=1)]
    timeout: PositiveSeconds = 30.0


class _Endpoint(BaseModel):
    """How to talk to the authorization server: trust, and the token endpoint's bounds."""

    model_config = MODEL_CONFIG

    client_secret: Text | None = None
    client_secret_env: Text | None = None
    scope: Text | None = None
    resource: Text | None = None
    ca_file: Text | None = None
    auth_method: AuthMethod | None = None
    allow_insecure_http: Flag = False
    max_retries: Count = DEFAULT_MAX_RETRIES
    timeout: PositiveSeconds = DEFAULT_TIMEOUT
    deadline: PositiveSeconds = DEFAULT_DEADLINE
    max_response_bytes: PositiveCount = DEFAULT_MAX_RESPONSE_BYTES
    max_retry_wait: Seconds = DEFAULT_MAX_RETRY_WAIT
    # private_key_jwt: the key (a PEM file, or PEM text inline or in an environment variable),
    # its algorithm (default: implied by the key) and the AS's issuer (the audience).
    private_key_file: Text | None = None
    private_key: Text | None = None
    private_key_env: Text | None = None
    signing_alg: Text | None = None
    issuer: HttpUrl | None = None


class _Grant(_Endpoint):
    token_endpoint: HttpUrl
    client_id: Text


class _RefreshGrant(_Grant):
    type: Literal["refresh_token"]
    refresh_token: Text | None = None
    refresh_token_env: Text | None = None
    store: Text | None = None
    refresh_grace: Seconds = 0.0


class _ClientCredentialsGrant(_Grant):
    type: Literal["client_credentials"]


class _LoginToken(_Endpoint):
    """Credentials that ``freshtoken login`` writes to ``store``; the rest is optional."""

    type: Literal["login"]
    store: Text
    client_id: Text | None = None
    client_metadata_url: HttpUrl | None = None
    token_endpoint: HttpUrl | None = None
    grant: Literal["authorization_code", "client_credentials"] = "authorization_code"
    redirect_port: Annotated[StrictInt, Field(ge=0, le=65535)] = 0
    refresh_grace: Seconds = 0.0


_TOKEN_MODELS: Final[dict[str, type[BaseModel]]] = {
    "static": _StaticToken,
    "refresh_token": _RefreshGrant,
    "client_credentials": _ClientCredentialsGrant,
    "command": _CommandToken,
    "login": _LoginToken,
}


# ---- loading ----------------------------------------------------------------------------------


def load_config(path: str | Path) -> ProxyConfig:
    """Read and validate a proxy configuration file and build its token sources.

    Raises :class:`~freshtoken.ConfigError` with one line ``<file>: <key path>: <reason>``
    (``.source``, ``.field`` and ``.reason`` hold the parts).
    """
    file = Path(path)
    where = _Where(file)
    model: _File = parse(_File, load_toml(file), source=where.source)
    matcher = _matcher(where, model.matcher)
    targets = tuple(_target(where, name, model.targets[name]) for name in sorted(model.targets))
    return ProxyConfig(
        path=file,
        host=model.listen.host,
        port=model.listen.port,
        secret=model.listen.secret,
        allowed_origins=model.listen.allowed_origins,
        limits=model.limits,
        matcher=matcher,
        targets=targets,
    )


@dataclass(frozen=True, slots=True)
class _Where:
    """The file being loaded: builds errors and resolves paths relative to it."""

    file: Path

    @property
    def source(self) -> str:
        return str(self.file)

    def error(self, field: str, reason: str) -> ConfigError:
        return ConfigError.at(self.source, field, reason)

    def path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.file.parent / path

    def secret(
        self,
        table: BaseModel,
        prefix: str,
        name: str,
        *,
        required: bool,
        valid: Callable[[str], bool],
        syntax: str,
    ) -> str | None:
        """``name`` given inline, or ``name_env`` naming an environment variable (not both)."""
        inline: str | None = getattr(table, name)
        env_name: str | None = getattr(table, f"{name}_env")
        if inline is not None and env_name is not None:
            raise self.error(f"{prefix}.{name}", f"give {name} or {name}_env, not both")
        if env_name is not None:
            value = os.environ.get(env_name)
            if not value:
                raise self.error(
                    f"{prefix}.{name}_env", f"environment variable {env_name} is not set"
                )
            if not valid(value):
                raise self.error(
                    f"{prefix}.{name}_env",
                    f"environment variable {env_name} does not hold {syntax}",
                )
            return value
        if inline is None:
            if required:
                raise self.error(f"{prefix}.{name}", f"required (or {name}_env)")
            return None
        if not valid(inline):
            raise self.error(f"{prefix}.{name}", f"must be {syntax}")
        return inline

    def ssl_context(self, field: str, value: str | None) -> ssl.SSLContext | None:
        if value is None:
            return None
        ca_file = self.path(value)
        try:
            return ssl.create_default_context(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise self.error(field, f"cannot load CA bundle {ca_file}: {reason}") from None

    def insecure(self, field: str, url: str, allowed: bool, what: str) -> None:
        parts = urlsplit(url)
        if parts.scheme == "http" and not allowed and not is_loopback_host(parts.hostname or ""):
            raise self.error(
                field,
                f"plain http to {parts.hostname} would carry {what} in clear text; use https, "
                "or set allow_insecure_http = true",
            )


def _matcher(where: _Where, table: _Matcher) -> AuthFailureMatcher:
    if table.function is not None:
        for other in ("patterns", "include_default", "tool_errors"):
            if other in table.model_fields_set:
                raise where.error("matcher.function", f"give {other} or function, not both")
        return _import_matcher(where, table.function)
    if not table.patterns and not table.include_default:
        raise where.error("matcher.include_default", "false needs at least one pattern")
    if not table.patterns and table.include_default and not table.tool_errors:
        return default_matcher
    return pattern_matcher(
        table.patterns, include_default=table.include_default, tool_errors=table.tool_errors
    )


def _import_matcher(where: _Where, dotted: str) -> AuthFailureMatcher:
    module_name, _, attr = dotted.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise where.error("matcher.function", f"cannot import {dotted!r}: {exc}") from None
    if not callable(found):
        raise where.error("matcher.function", f"{dotted!r} is not callable")
    matcher: Callable[[Any], bool] = found
    return matcher


def _target(where: _Where, name: str, table: _Target) -> TargetConfig:
    prefix = f"targets.{name}"
    if not valid_target_name(name):
        raise where.error(
            prefix, "invalid target name (letters, digits, '.', '_', '-', '~'; not _control)"
        )
    where.insecure(f"{prefix}.url", table.url, table.allow_insecure_http, "bearer tokens")
    return TargetConfig(
        name=name,
        url=table.url,
        source=_token_source(where, f"{prefix}.token", table.token),
        ssl_context=where.ssl_context(f"{prefix}.ca_file", table.ca_file),
        allow_insecure_http=table.allow_insecure_http,
    )


def _token_source(where: _Where, prefix: str, data: dict[str, Any]) -> TokenSource:
    kinds = " | ".join(_TOKEN_MODELS)
    kind = data.get("type")
    if kind is None:
        raise where.error(f"{prefix}.type", f"required ({kinds})")
    if not isinstance(kind, str) or kind not in _TOKEN_MODELS:
        raise where.error(f"{prefix}.type", f"must be one of {kinds}, got {kind!r}")
    table: BaseModel = parse(_TOKEN_MODELS[kind], data, source=where.source, prefix=prefix)
    if isinstance(table, _StaticToken):
        token = where.secret(
            table,
            prefix,
            "token",
            required=True,
            valid=valid_access_token,
            syntax="an RFC 6750 b64token",
        )
        assert token is not None
        return StaticTokenSource(token)
    if isinstance(table, _CommandToken):
        return CommandTokenSource(table.command, timeout=table.timeout)
    if isinstance(table, _LoginToken):
        return _login_source(where, prefix, table)
    assert isinstance(table, _Grant)
    return _grant_source(where, prefix, table)


def _endpoint_options(where: _Where, prefix: str, table: _Endpoint) -> dict[str, Any]:
    ca_file = where.path(table.ca_file) if table.ca_file is not None else None
    if ca_file is not None and not ca_file.is_file():
        raise where.error(f"{prefix}.ca_file", f"no such file {ca_file}")
    return {
        "verify": ca_file if ca_file is not None else True,
        "allow_insecure_http": table.allow_insecure_http,
        "max_retries": table.max_retries,
        "timeout": table.timeout,
        "deadline": table.deadline,
        "max_response_bytes": table.max_response_bytes,
        "max_retry_wait": table.max_retry_wait,
        **_client_key(where, prefix, table),
    }


def _client_key(where: _Where, prefix: str, table: _Endpoint) -> dict[str, Any]:
    """``client_key`` and ``issuer`` for ``auth_method = "private_key_jwt"`` (else nothing)."""
    pem = where.secret(
        table, prefix, "private_key", required=False, valid=bool, syntax="a PEM private key"
    )
    given = table.private_key_file is not None or pem is not None
    if table.auth_method != "private_key_jwt":
        if given or table.signing_alg is not None:
            raise where.error(f"{prefix}.auth_method", 'a private key needs "private_key_jwt"')
        return {}
    if table.private_key_file is not None and pem is not None:
        raise where.error(f"{prefix}.private_key_file", "give the key once (file or PEM text)")
    if not given:
        raise where.error(
            f"{prefix}.private_key_file", "required by private_key_jwt (or private_key[_env])"
        )
    if table.issuer is None:
        raise where.error(
            f"{prefix}.issuer", "required by private_key_jwt: the audience of its assertions"
        )
    field = "private_key_file" if table.private_key_file is not None else "private_key"
    try:
        if table.private_key_file is not None:
            path = where.path(table.private_key_file)
            key = ClientKey.from_file(path, table.signing_alg)
        else:
            assert pem is not None
            key = ClientKey.from_pem(pem, table.signing_alg, source="the key")
    except ValueError as exc:
        raise where.error(f"{prefix}.{field}", str(exc)) from None
    return {"client_key": key, "issuer": table.issuer}


def _login_source(where: _Where, prefix: str, table: _LoginToken) -> TokenSource:
    store = TokenStore(where.path(table.store))
    name = prefix.split(".")[1]
    try:
        tokens = store.open()
    except TokenSourceError as exc:
        raise where.error(f"{prefix}.store", str(exc)) from None
    login = store.login
    if login is None:
        raise where.error(
            f"{prefix}.store",
            f"no login in {store.path} yet: run `freshtoken login {name} --config "
            f"{where.file}` first",
        )
    options = _endpoint_options(where, prefix, table)
    where.insecure(
        f"{prefix}.store",
        login.token_endpoint,
        table.allow_insecure_http,
        "client credentials and refresh tokens",
    )
    # The file's client secret (rotated by its owner) wins over the one stored at login.
    secret = where.secret(
        table, prefix, "client_secret", required=False, valid=bool, syntax="a secret"
    )
    client_secret = secret if secret is not None else login.client_secret
    auth_method = login.auth_method
    if "client_key" in options:
        auth_method = "private_key_jwt"  # a key named in this file wins, like its secret
    elif auth_method == "private_key_jwt":
        # The key the login read (the store keeps its path, never the key).
        try:
            options.update(client_key=stored_key(login), issuer=login.issuer)
        except LoginError as exc:
            raise where.error(f"{prefix}.store", str(exc)) from None
    if login.grant == "client_credentials":
        if client_secret is None and auth_method != "private_key_jwt":
            raise where.error(f"{prefix}.client_secret", "the client-credentials login needs one")
        try:
            return ClientCredentialsSource(
                login.token_endpoint,
                login.client_id,
                client_secret,
                scope=login.scope,
                resource=login.resource,
                auth_method=auth_method,
                **options,
            )
        except ValueError as exc:
            raise where.error(f"{prefix}.store", str(exc)) from None
    if tokens is None:
        raise where.error(
            f"{prefix}.store",
            f"{store.path} holds no token: run `freshtoken login {name} --config "
            f"{where.file}` again",
        )
    try:
        return RefreshTokenSource(
            login.token_endpoint,
            login.client_id,
            client_secret,
            resource=login.resource,
            store=store.path,
            auth_method=auth_method,
            refresh_grace=table.refresh_grace,
            **options,
        )
    except (TokenSourceError, ValueError) as exc:
        raise where.error(f"{prefix}.store", str(exc)) from None


def _grant_source(where: _Where, prefix: str, table: _Grant) -> TokenSource:
    where.insecure(
        f"{prefix}.token_endpoint",
        table.token_endpoint,
        table.allow_insecure_http,
        "client credentials and refresh tokens",
    )
    common: dict[str, Any] = {
        "scope": table.scope,
        "resource": table.resource,
        "auth_method": table.auth_method or "client_secret_basic",
        **_endpoint_options(where, prefix, table),
    }
    client_secret = where.secret(
        table,
        prefix,
        "client_secret",
        required=isinstance(table, _ClientCredentialsGrant)
        and table.auth_method != "private_key_jwt",
        valid=bool,
        syntax="a secret",
    )
    if isinstance(table, _ClientCredentialsGrant):
        return ClientCredentialsSource(
            table.token_endpoint, table.client_id, client_secret, **common
        )
    assert isinstance(table, _RefreshGrant)
    store = where.path(table.store) if table.store is not None else None
    refresh_token = where.secret(
        table,
        prefix,
        "refresh_token",
        required=store is None or not store.exists(),
        valid=valid_refresh_token,
        syntax="a refresh token (printable ASCII, RFC 6749)",
    )
    try:
        return RefreshTokenSource(
            table.token_endpoint,
            table.client_id,
            client_secret,
            refresh_token=refresh_token,
            store=store,
            refresh_grace=table.refresh_grace,
            **common,
        )
    except TokenSourceError as exc:
        raise where.error(f"{prefix}.store", str(exc)) from None


def load_login_targets(path: str | Path) -> dict[str, LoginTarget | ConfigError]:
    """The targets of a config file that ``freshtoken login`` can log in to, by name.

    A target qualifies with a ``login`` token, or a ``refresh_token`` token that names a
    ``store`` (its client is then the pre-registered one). Other targets map to the
    :class:`~freshtoken.ConfigError` that says why not; a malformed file raises it.
    """
    file = Path(path)
    where = _Where(file)
    model: _File = parse(_File, load_toml(file), source=where.source)
    found: dict[str, LoginTarget | ConfigError] = {}
    for name in sorted(model.targets):
        try:
            found[name] = _login_target(where, name, model.targets[name])
        except ConfigError as exc:
            found[name] = exc
    return found


def _login_target(where: _Where, name: str, target: _Target) -> LoginTarget:
    prefix = f"targets.{name}.token"
    kind = target.token.get("type")
    if kind not in ("login", "refresh_token"):
        raise where.error(
            f"{prefix}.type",
            f'freshtoken login needs type = "login" (or "refresh_token" with a store), '
            f"not {kind!r}",
        )
    table: BaseModel = parse(_TOKEN_MODELS[kind], target.token, source=where.source, prefix=prefix)
    assert isinstance(table, _LoginToken | _RefreshGrant)
    if table.store is None:
        raise where.error(f"{prefix}.store", "freshtoken login writes to a store: name one")
    where.insecure(f"targets.{name}.url", target.url, target.allow_insecure_http, "bearer tokens")
    options = _endpoint_options(where, prefix, table)
    server_ca = where.path(target.ca_file) if target.ca_file is not None else None
    if server_ca is not None and not server_ca.is_file():
        raise where.error(f"targets.{name}.ca_file", f"no such file {server_ca}")
    secret = where.secret(
        table, prefix, "client_secret", required=False, valid=bool, syntax="a secret"
    )
    return LoginTarget(
        url=target.url,
        store=where.path(table.store),
        client_id=table.client_id,
        client_secret=secret,
        auth_method=table.auth_method,
        client_metadata_url=table.client_metadata_url if isinstance(table, _LoginToken) else None,
        token_endpoint=table.token_endpoint,
        scope=table.scope,
        resource=table.resource,
        grant=table.grant if isinstance(table, _LoginToken) else "authorization_code",
        server_verify=server_ca if server_ca is not None else True,
        as_verify=options["verify"],
        allow_insecure_http=table.allow_insecure_http or target.allow_insecure_http,
        timeout=table.timeout,
        deadline=table.deadline,
        redirect_port=table.redirect_port if isinstance(table, _LoginToken) else 0,
        client_key=options.get("client_key"),
        private_key_file=(
            None if table.private_key_file is None else where.path(table.private_key_file)
        ),
    )
