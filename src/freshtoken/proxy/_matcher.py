"""Deciding whether a parsed upstream message means "your bearer was not accepted".

A matcher sees parsed JSON (never raw bytes), so a tool that merely *echoes* the words
"authentication failed" inside a successful result is not mistaken for an auth failure. A match
makes the proxy replay the request, and replaying a ``tools/call`` runs the tool again: the
default matcher trusts structured signals only (error objects), never the text of a tool's
result; reading tool-error text is opt-in (:data:`tool_error_matcher`, ``tool_errors=True``).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

__all__ = [
    "AUTH_FAILURE_CODES",
    "AuthFailureMatcher",
    "default_matcher",
    "pattern_matcher",
    "tool_error_matcher",
]


class AuthFailureMatcher(Protocol):
    """Any callable that, given one parsed JSON body or JSON-RPC message (or a batch list),
    returns True when it reports that the bearer token was not accepted."""

    def __call__(self, message: Any, /) -> bool: ...


AUTH_FAILURE_CODES = frozenset(
    {
        "authentication_failed",
        "authentication_required",
        "invalid_token",
        "token_expired",
        "expired_token",
        "unauthenticated",
        "unauthorized",
        "401",
    }
)
"""Machine-readable error codes (compared case-insensitively) that mean the bearer was refused."""

# Phrases that mean "who are you?" (the bearer), never "you may not" (scope, permission):
# insufficient_scope and "forbidden" are step-up / permission signals and must not trigger a refresh.
_AUTH_PHRASES = re.compile(
    r"\bauthenticat\w*[\s_-]+(?:failed|failure|required|error)\b"
    r"|\bunauthenticated\b"
    r"|\bunauthori[sz]ed\b"
    r"|\binvalid[\s_-]+(?:access[\s_-]+|bearer[\s_-]+)?token\b"
    r"|\b(?:access[\s_-]+|bearer[\s_-]+)?token[\s_-]+(?:has[\s_-]+)?expired\b"
    r"|\bexpired[\s_-]+(?:access[\s_-]+|bearer[\s_-]+)?token\b",
    re.IGNORECASE,
)


def _is_code(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in AUTH_FAILURE_CODES
    return isinstance(value, int) and not isinstance(value, bool) and value == 401


def _mentions(value: Any, phrases: re.Pattern[str]) -> bool:
    return isinstance(value, str) and phrases.search(value) is not None


def _error_says_auth(error: Any, phrases: re.Pattern[str]) -> bool:
    if isinstance(error, str):
        return _is_code(error) or _mentions(error, phrases)
    if not isinstance(error, Mapping):
        return False
    # JSON-RPC's own integer codes (-32xxx) carry no auth meaning; string codes do (PostHog shape).
    if isinstance(error.get("code"), str) and _is_code(error["code"]):
        return True
    if _mentions(error.get("message"), phrases):
        return True
    data = error.get("data")
    if isinstance(data, Mapping):
        for key in ("code", "error", "reason", "type"):
            if _is_code(data.get(key)) or _mentions(data.get(key), phrases):
                return True
        for key in ("status", "http_status", "httpStatus", "statusCode"):
            if data.get(key) == 401:
                return True
        return _mentions(data.get("message"), phrases) or _mentions(
            data.get("error_description"), phrases
        )
    return _is_code(data) or _mentions(data, phrases)


def _tool_error_says_auth(result: Any, phrases: re.Pattern[str]) -> bool:
    if not isinstance(result, Mapping) or result.get("isError") is not True:
        return False
    content = result.get("content")
    if not isinstance(content, list):
        return False
    return any(
        isinstance(item, Mapping)
        and item.get("type") == "text"
        and _mentions(item.get("text"), phrases)
        for item in content
    )


def _match(message: Any, phrases: re.Pattern[str], tool_errors: bool) -> bool:
    if isinstance(message, list):
        return any(_match(item, phrases, tool_errors) for item in message)
    if not isinstance(message, Mapping):
        return False
    if "error" in message:
        return _error_says_auth(message["error"], phrases)
    if tool_errors and "result" in message:
        return _tool_error_says_auth(message["result"], phrases)
    return False


# The built-in rules read only an "error" member, or (when they read tool errors) a result's
# "isError": true. A raw body that spells neither, and has no escape that could spell them
# (\u0065rror) nor a UTF-16/32 encoding (NUL bytes up front), cannot match, so the hot path need
# not parse it. Anything else is parsed and classified as usual.
_IS_ERROR_TRUE = re.compile(rb'"isError"\s*:\s*true')
# Built-in matcher -> whether it reads tool-error text.
_BUILT_IN: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def may_match(matcher: AuthFailureMatcher, body: bytes) -> bool:
    """False only when parsing ``body`` cannot make ``matcher`` say True (a built-in matcher and
    a body without an ``error`` member, nor ``isError: true`` for one that reads tool errors);
    custom matchers always see it."""
    tool_errors = _BUILT_IN.get(matcher)
    if tool_errors is None:
        return True
    if b'"error"' in body or b"\\u" in body or b"\x00" in body[:4]:
        return True
    return tool_errors and b'"isError"' in body and _IS_ERROR_TRUE.search(body) is not None


def default_matcher(message: Any) -> bool:
    """The built-in rule, applied to parsed JSON only.

    True for a JSON-RPC (or plain JSON) ``error`` whose string ``code`` is an auth code (PostHog's
    ``{"error": {"code": "authentication_failed"}}``), whose ``message`` names an authentication
    failure, or whose ``data`` carries such a code, phrase or HTTP status 401. A batch matches
    when any member does. ``insufficient_scope`` and permission ("forbidden") errors never match.
    A ``tools/call`` result never matches, whatever its text says: a tool that failed with
    "invalid token" in its output may be reporting its own business, and a replay would run it
    twice (see :data:`tool_error_matcher`).
    """
    return _match(message, _AUTH_PHRASES, False)


def pattern_matcher(
    patterns: Iterable[str] = (), *, include_default: bool = True, tool_errors: bool = False
) -> AuthFailureMatcher:
    """A matcher that also accepts the regular expressions ``patterns`` (case-insensitive).

    The patterns are searched in the same parsed fields the default rule reads (error message,
    error data), never in the raw body. ``tool_errors=True`` also reads the text content of a
    ``tools/call`` result with ``isError: true``: for upstreams known to report a refused bearer
    that way (a match re-runs the tool).
    """
    pattern_list = list(patterns)
    for pattern in pattern_list:
        re.compile(pattern)
    alternatives = ([_AUTH_PHRASES.pattern] if include_default else []) + [
        f"(?:{p})" for p in pattern_list
    ]
    if not alternatives:
        raise ValueError("pattern_matcher needs at least one pattern when include_default=False")
    phrases = re.compile("|".join(alternatives), re.IGNORECASE)

    def matcher(message: Any) -> bool:
        return _match(message, phrases, tool_errors)

    matcher.__doc__ = (
        f"Auth-failure matcher with the extra patterns {pattern_list!r}"
        f"{' that also reads tool-error text' if tool_errors else ''}."
    )
    _BUILT_IN[matcher] = tool_errors
    return matcher


_BUILT_IN[default_matcher] = False

tool_error_matcher = pattern_matcher(tool_errors=True)
"""The default rule, plus a ``tools/call`` result with ``isError: true`` whose text names an
authentication failure (opt-in: a match re-runs the tool)."""
