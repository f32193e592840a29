"""The proxy's TOML configuration file (``freshtoken proxy --config FILE``)."""

from __future__ import annotations

import importlib
import os
import ssl
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from freshtoken._errors import ConfigError
from freshtoken._timeline import Timeline
from freshtoken.proxy._limits import Limits
from freshtoken.proxy._matcher import AuthFailureMatcher, default_matcher, pattern_matcher
from freshtoken.proxy._proxy import Proxy, valid_target_name
from freshtoken.proxy._tokens import (
    ClientCredentialsSource,
    CommandTokenSource,
    RefreshTokenSource,
    StaticTokenSource,
    TokenSource,
)

__all__ = ["ProxyConfig", "TargetConfig", "load_config"]


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """One ``[targets.NAME]`` table, with its token source already built."""

    name: str
    url: str
    source: TokenSource
    ssl_context: ssl.SSLContext | None = None


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """A validated configuration file."""

    path: Path
    host: str
    port: int
    secret: str | None
    allowed_origins: tuple[str, ...]
    max_body: int
    sse_peek_bytes: int
    sse_peek_timeout: float
    connect_timeout: float
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
            limits=Limits(
                max_body=self.max_body,
                sse_peek_bytes=self.sse_peek_bytes,
                sse_peek_timeout=self.sse_peek_timeout,
                connect_timeout=self.connect_timeout,
            ),
            timeline=timeline,
        )

    def register_all(self, proxy: Proxy) -> dict[str, str]:
        """Register every target on a running ``proxy``; return name → local URL."""
        return {
            t.name: proxy.register(t.name, t.url, t.source, ssl_context=t.ssl_context)
            for t in self.targets
        }


class _Table:
    """A TOML table that remembers its dotted key, so every error names file and key."""

    def __init__(self, file: Path, key: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: {key}: must be a table")
        self.file = file
        self.key = key
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def where(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def fail(self, name: str, reason: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.where(name)}: {reason}")

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self.used.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.fail(name, f"must be {_kind_name(kind)}, got a boolean")
        if not isinstance(value, kind):
            raise self.fail(name, f"must be {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def require(self, name: str, kind: type | tuple[type, ...]) -> Any:
        value = self.get(name, kind)
        if value is None:
            raise self.fail(name, "is required")
        return value

    def positive(self, name: str, default: float, kind: type | tuple[type, ...]) -> Any:
        value = self.get(name, kind, default)
        if value <= 0:
            raise self.fail(name, f"must be > 0, got {value}")
        return value

    def table(self, name: str) -> _Table:
        self.used.add(name)
        return _Table(self.file, self.where(name), self.data.get(name, {}))

    def secret(self, name: str, *, required: bool) -> str | None:
        """``name`` inline, or ``name_env`` naming an environment variable (not both)."""
        inline: str | None = self.get(name, str)
        env_name: str | None = self.get(f"{name}_env", str)
        if inline is not None and env_name is not None:
            raise self.fail(name, f"give {name} or {name}_env, not both")
        if env_name is not None:
            value = os.environ.get(env_name)
            if not value:
                raise self.fail(f"{name}_env", f"environment variable {env_name} is not set")
            return value
        if inline is None and required:
            raise self.fail(name, f"is required (or {name}_env)")
        return inline

    def path(self, name: str) -> Path | None:
        value = self.get(name, str)
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.file.parent / path

    def check_unknown(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.fail(unknown[0], "unknown key")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        bool: "a boolean",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def load_config(path: str | Path) -> ProxyConfig:
    """Read and validate a proxy configuration file.

    Raises :class:`~freshtoken.ConfigError` with one line naming the file, the key and the reason.
    """
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    root = _Table(file, "", raw)
    listen = root.table("listen")
    limits = root.table("limits")
    matcher = _matcher(root.table("matcher"))
    targets_table = root.table("targets")
    root.check_unknown()

    host = listen.get("host", str, "127.0.0.1")
    port = listen.get("port", int, 0)
    if not 0 <= port <= 65535:
        raise listen.fail("port", f"must be 0..65535, got {port}")
    secret = listen.get("secret", str)
    origins = listen.get("allowed_origins", list, [])
    if not all(isinstance(o, str) for o in origins):
        raise listen.fail("allowed_origins", "must be a list of strings")
    listen.check_unknown()

    settings = {
        "max_body": limits.positive("max_body", 1 << 20, int),
        "sse_peek_bytes": limits.positive("sse_peek_bytes", 64 * 1024, int),
        "sse_peek_timeout": float(limits.positive("sse_peek_timeout", 10.0, (int, float))),
        "connect_timeout": float(limits.positive("connect_timeout", 10.0, (int, float))),
    }
    limits.check_unknown()

    targets = tuple(_target(targets_table.table(name), name) for name in sorted(targets_table.data))
    if not targets:
        raise root.fail("targets", "at least one [targets.NAME] table is required")
    config = ProxyConfig(
        path=file,
        host=host,
        port=port,
        secret=secret,
        allowed_origins=tuple(origins),
        matcher=matcher,
        targets=targets,
        **settings,
    )
    try:
        config.create_proxy()
    except ValueError as exc:
        raise listen.fail("host" if "bind" in str(exc) else "secret", str(exc)) from None
    return config


def _matcher(table: _Table) -> AuthFailureMatcher:
    patterns = table.get("patterns", list, [])
    if not all(isinstance(p, str) for p in patterns):
        raise table.fail("patterns", "must be a list of strings (regular expressions)")
    include_default = table.get("include_default", bool, True)
    function = table.get("function", str)
    table.check_unknown()
    if function is not None:
        if patterns:
            raise table.fail("function", "give patterns or function, not both")
        return _import_matcher(table, function)
    if not patterns and include_default:
        return default_matcher
    try:
        return pattern_matcher(patterns, include_default=include_default)
    except Exception as exc:
        raise table.fail("patterns", f"invalid: {exc}") from None


def _import_matcher(table: _Table, dotted: str) -> AuthFailureMatcher:
    module_name, sep, attr = dotted.partition(":")
    if not sep or not module_name or not attr:
        raise table.fail("function", f"must be 'module:function', got {dotted!r}")
    try:
        found: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise table.fail("function", f"cannot import {dotted!r}: {exc}") from None
    if not callable(found):
        raise table.fail("function", f"{dotted!r} is not callable")
    matcher: Callable[[Any], bool] = found
    return matcher


def _target(table: _Table, name: str) -> TargetConfig:
    if not valid_target_name(name):
        raise ConfigError(
            f"{table.file}: {table.key}: invalid target name (letters, digits, '.', '_', '-')"
        )
    url = table.require("url", str)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise table.fail("url", f"must be an http(s) URL, got {url!r}")
    ca_file = table.path("ca_file")
    token = table.table("token")
    table.check_unknown()
    upstream_ssl = _ssl_context(table, "ca_file", ca_file)
    source = _token_source(token)
    token.check_unknown()
    return TargetConfig(name=name, url=url, source=source, ssl_context=upstream_ssl)


def _ssl_context(table: _Table, key: str, ca_file: Path | None) -> ssl.SSLContext | None:
    if ca_file is None:
        return None
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise table.fail(key, f"cannot load CA bundle {ca_file}: {exc}") from None


_TOKEN_TYPES = ("static", "refresh_token", "client_credentials", "command")


def _token_source(table: _Table) -> TokenSource:
    if not table.data:
        raise table.fail("type", f"a token table is required (type = {' | '.join(_TOKEN_TYPES)})")
    kind = table.require("type", str)
    if kind == "static":
        return StaticTokenSource(table.secret("token", required=True) or "")
    if kind == "command":
        argv = table.require("command", list)
        if not argv or not all(isinstance(a, str) for a in argv):
            raise table.fail("command", "must be a non-empty list of strings (argv)")
        timeout = float(table.positive("timeout", 30.0, (int, float)))
        return CommandTokenSource(argv, timeout=timeout)
    if kind not in ("refresh_token", "client_credentials"):
        raise table.fail("type", f"must be one of {', '.join(_TOKEN_TYPES)}, got {kind!r}")
    endpoint = table.require("token_endpoint", str)
    client_id = table.require("client_id", str)
    ca_file = table.path("ca_file")
    common: dict[str, Any] = {
        "scope": table.get("scope", str),
        "resource": table.get("resource", str),
        "verify": ca_file if ca_file is not None else True,
        "max_retries": table.get("max_retries", int, 3),
        "timeout": float(table.positive("timeout", 10.0, (int, float))),
        "auth_method": table.get("auth_method", str, "client_secret_basic"),
    }
    if common["auth_method"] not in ("client_secret_basic", "client_secret_post"):
        raise table.fail("auth_method", "must be client_secret_basic or client_secret_post")
    if common["max_retries"] < 0:
        raise table.fail("max_retries", "must be >= 0")
    if ca_file is not None and not ca_file.is_file():
        raise table.fail("ca_file", f"no such file {ca_file}")
    if kind == "client_credentials":
        secret = table.secret("client_secret", required=True) or ""
        return ClientCredentialsSource(endpoint, client_id, secret, **common)
    secret_or_none = table.secret("client_secret", required=False)
    store = table.path("store")
    has_store = store is not None and store.exists()
    refresh_token = table.secret("refresh_token", required=not has_store)
    try:
        return RefreshTokenSource(
            endpoint,
            client_id,
            secret_or_none,
            refresh_token=refresh_token,
            store=store,
            **common,
        )
    except Exception as exc:
        raise table.fail("store", str(exc)) from None
