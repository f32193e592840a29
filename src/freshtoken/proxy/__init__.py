"""The loopback proxy: a fresh token on every hop, one refresh and one replay on auth failure."""

from __future__ import annotations

from freshtoken.proxy._config import ProxyConfig, TargetConfig, load_config
from freshtoken.proxy._grants import ClientCredentialsSource, RefreshTokenSource
from freshtoken.proxy._limits import Limits
from freshtoken.proxy._matcher import (
    AUTH_FAILURE_CODES,
    AuthFailureMatcher,
    default_matcher,
    pattern_matcher,
    tool_error_matcher,
)
from freshtoken.proxy._proxy import Proxy
from freshtoken.proxy._tokens import (
    BaseTokenSource,
    CallableTokenSource,
    CommandTokenSource,
    FetchedToken,
    StaticTokenSource,
    TokenSource,
)

__all__ = [
    "AUTH_FAILURE_CODES",
    "AuthFailureMatcher",
    "BaseTokenSource",
    "CallableTokenSource",
    "ClientCredentialsSource",
    "CommandTokenSource",
    "FetchedToken",
    "Limits",
    "Proxy",
    "ProxyConfig",
    "RefreshTokenSource",
    "StaticTokenSource",
    "TargetConfig",
    "TokenSource",
    "default_matcher",
    "load_config",
    "pattern_matcher",
    "tool_error_matcher",
]
