"""The loopback proxy: a fresh token on every hop, one refresh and one replay on auth failure."""

from __future__ import annotations

from freshtoken.proxy._config import ProxyConfig, TargetConfig, load_config, load_login_targets
from freshtoken.proxy._grants import ClientCredentialsSource, RefreshTokenSource
from freshtoken.proxy._limits import Limits
from freshtoken.proxy._login import (
    LoginResult,
    LoginTarget,
    StoreStatus,
    login,
    login_status,
    logout,
)
from freshtoken.proxy._matcher import (
    AUTH_FAILURE_CODES,
    AuthFailureMatcher,
    default_matcher,
    pattern_matcher,
    tool_error_matcher,
)
from freshtoken.proxy._oauth_client import LoginError, LoginFailure
from freshtoken.proxy._proxy import Proxy
from freshtoken.proxy._store import StoredLogin
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
    "LoginError",
    "LoginFailure",
    "LoginResult",
    "LoginTarget",
    "Proxy",
    "ProxyConfig",
    "RefreshTokenSource",
    "StaticTokenSource",
    "StoreStatus",
    "StoredLogin",
    "TargetConfig",
    "TokenSource",
    "default_matcher",
    "load_config",
    "load_login_targets",
    "login",
    "login_status",
    "logout",
    "pattern_matcher",
    "tool_error_matcher",
]
