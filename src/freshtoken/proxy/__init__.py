"""The loopback proxy: a fresh token on every hop, one refresh and one replay on auth failure.

Names load on first use (see ``freshtoken._lazy``): the pytest fixtures import the proxy, not
its configuration file reader or the login flow.
"""

from __future__ import annotations

import typing as _typing

from freshtoken._lazy import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from freshtoken.proxy._config import ProxyConfig, TargetConfig, load_config, load_login_targets
    from freshtoken.proxy._grants import ClientCredentialsSource, RefreshTokenSource
    from freshtoken.proxy._jwt import ClientKey
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
    "ClientKey",
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

_WHERE: dict[str, str] = {
    "AUTH_FAILURE_CODES": "_matcher",
    "AuthFailureMatcher": "_matcher",
    "BaseTokenSource": "_tokens",
    "CallableTokenSource": "_tokens",
    "ClientCredentialsSource": "_grants",
    "ClientKey": "_jwt",
    "CommandTokenSource": "_tokens",
    "FetchedToken": "_tokens",
    "Limits": "_limits",
    "LoginError": "_oauth_client",
    "LoginFailure": "_oauth_client",
    "LoginResult": "_login",
    "LoginTarget": "_login",
    "Proxy": "_proxy",
    "ProxyConfig": "_config",
    "RefreshTokenSource": "_grants",
    "StaticTokenSource": "_tokens",
    "StoreStatus": "_login",
    "StoredLogin": "_store",
    "TargetConfig": "_config",
    "TokenSource": "_tokens",
    "default_matcher": "_matcher",
    "load_config": "_config",
    "load_login_targets": "_config",
    "login": "_login",
    "login_status": "_login",
    "logout": "_login",
    "pattern_matcher": "_matcher",
    "tool_error_matcher": "_matcher",
}
"""Each public name and the submodule that defines it."""

if not _typing.TYPE_CHECKING:
    # Hidden from type checkers, which see the imports above: a misspelt name stays an error.
    __getattr__, __dir__ = _lazy_exports(__name__, globals(), _WHERE)
