"""The default auth-failure matcher and the first-SSE-event scanner."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from freshtoken.proxy import default_matcher, pattern_matcher, tool_error_matcher
from freshtoken.proxy._matcher import may_match
from freshtoken.proxy._sse import FirstEventScanner


def _rpc_error(message: str, data: Any = None, code: int = -32001) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": 1, "error": error}


def _tool_error(text: str, is_error: bool = True) -> dict[str, Any]:
    result = {"content": [{"type": "text", "text": text}], "isError": is_error}
    return {"jsonrpc": "2.0", "id": 1, "result": result}


AUTH_FAILURES = [
    # the fake MCP server's shapes
    _rpc_error(
        "authentication_failed: token expired",
        {"error": "authentication_failed", "reason": "expired"},
    ),
    {"error": {"code": "authentication_failed", "message": "authentication_failed: x"}},
    {"error": {"code": "authentication_failed"}},
    # shapes seen in the wild
    _rpc_error("Unauthorized"),
    _rpc_error("Invalid or expired token", code=-32603),
    _rpc_error("Internal error", {"code": "invalid_token"}),
    _rpc_error("Upstream call failed", {"status": 401}),
    _rpc_error("Authentication required"),
    _rpc_error("Error", "access token has expired"),
    [_rpc_error("fine", code=-1), _rpc_error("Unauthenticated")],
    {"error": "invalid_token"},
]

# A tool's own failure text: an auth failure only for an upstream known to report one that way.
TOOL_ERRORS_SAYING_AUTH = [
    _tool_error("Authentication failed (token revoked)"),
    _tool_error("Error: 401 Unauthorized from upstream API"),
    # A tool that hit a SyntaxError: running it again would not help, and would run it twice.
    _tool_error("SyntaxError: invalid token (line 1)"),
]

HEALTHY: list[Any] = [
    {"jsonrpc": "2.0", "id": 1, "result": {"content": []}},
    # a successful tool result that merely mentions the words
    _tool_error("authentication failed is a phrase this tool echoes", is_error=False),
    _rpc_error("Method not found", code=-32601),
    _rpc_error("insufficient_scope: need files:write"),
    _rpc_error("Forbidden", {"code": "insufficient_scope"}),
    _tool_error("file not found"),
    {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}},
    {"jsonrpc": "2.0", "id": 1, "error": {"code": 401, "message": "x"}},  # integer JSON-RPC code
    "authentication_failed",
    None,
    [],
    {"error": {"code": "not_found"}},
]


@pytest.mark.parametrize("message", AUTH_FAILURES)
def test_default_matcher_recognises_auth_failures(message: Any) -> None:
    assert default_matcher(message) is True


@pytest.mark.parametrize("message", HEALTHY)
def test_default_matcher_leaves_everything_else_alone(message: Any) -> None:
    assert default_matcher(message) is False
    assert tool_error_matcher(message) is False


@pytest.mark.parametrize("message", TOOL_ERRORS_SAYING_AUTH)
def test_tool_error_text_counts_only_when_opted_in(message: Any) -> None:
    assert default_matcher(message) is False
    assert pattern_matcher([r"nope"])(message) is False
    assert tool_error_matcher(message) is True
    assert pattern_matcher([r"nope"], tool_errors=True)(message) is True


@pytest.mark.parametrize("message", AUTH_FAILURES)
def test_opting_in_to_tool_errors_keeps_the_structured_rules(message: Any) -> None:
    assert tool_error_matcher(message) is True


def test_pattern_matcher_adds_patterns_in_parsed_fields_only() -> None:
    matcher = pattern_matcher([r"session\s+is\s+gone"])
    assert matcher(_rpc_error("Your session is gone"))
    assert matcher(_rpc_error("Unauthorized"))
    assert not matcher({"jsonrpc": "2.0", "id": 1, "result": {"note": "session is gone"}})
    only = pattern_matcher([r"custom-denied"], include_default=False)
    assert only(_rpc_error("custom-denied"))
    assert not only(_rpc_error("Unauthorized"))
    with pytest.raises(ValueError, match="at least one pattern"):
        pattern_matcher([], include_default=False)


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (b'data: {"a":1}\n\n', '{"a":1}'),
        (b"id: s-0\ndata:\n\n: comment\n\ndata: hello\n\n", "hello"),
        (b"id: p\nretry: 100\ndata: \n\nevent: message\ndata: x\r\n\r\n", "x"),
        (b"data: a\ndata: b\r\rdata: c\n\n", "a\nb"),
        (b"data:nospace\n\n", "nospace"),
        (b": only a comment\n\n", None),
        (b'data: {"incomplete": ', None),
    ],
)
def test_first_event_scanner(stream: bytes, expected: str | None) -> None:
    assert FirstEventScanner().feed(stream) == expected


@given(
    st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=20),
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
)
def test_first_event_scanner_is_split_agnostic(cuts: list[int], eol: bytes) -> None:
    stream = (
        b"id: 0"
        + eol
        + b"data:"
        + eol
        + eol
        + b": keepalive"
        + eol
        + eol
        + b"event: message"
        + eol
        + b'data: {"jsonrpc":"2.0"}'
        + eol
        + eol
        + b"data: later"
        + eol
    )
    scanner = FirstEventScanner()
    found = None
    position = 0
    for cut in [*cuts, len(stream)]:
        chunk = stream[position : position + cut]
        position += len(chunk)
        found = scanner.feed(chunk)
        if found is not None:
            break
    if found is None and position < len(stream):
        found = scanner.feed(stream[position:])
    assert found == '{"jsonrpc":"2.0"}'


_KEYS = st.sampled_from(["error", "isError", "result", "content", "type", "text", "code", "data"])
_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from(["authentication failed", "invalid_token", "text", "401"])
    | st.text()
)


def _json_children(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=4) | st.dictionaries(_KEYS | st.text(), children, max_size=4)


@pytest.mark.parametrize(
    "body",
    [
        json.dumps(message).encode()
        for message in [
            *AUTH_FAILURES,
            *TOOL_ERRORS_SAYING_AUTH,
            _tool_error("fine", is_error=False) | {"error": None},
        ]
    ]
    + [
        b'{"jsonrpc":"2.0","id":1,"result":{"isError" :\ttrue,"content":[]}}',
        # A key spelled with escapes, and JSON in UTF-16, must still be parsed.
        b'{"jsonrpc":"2.0","id":1,"\\u0065rror":{"code":"authentication_failed"}}',
        json.dumps({"error": {"code": "authentication_failed"}}).encode("utf-16"),
        json.dumps({"error": {"code": "authentication_failed"}}).encode("utf-32-le"),
    ],
)
def test_the_pre_filter_never_skips_a_body_the_built_in_matchers_could_match(body: bytes) -> None:
    assert may_match(tool_error_matcher, body)
    assert may_match(pattern_matcher([r"nope"], tool_errors=True), body)
    if b"isError" not in body:
        assert may_match(default_matcher, body)
        assert may_match(pattern_matcher([r"nope"]), body)


def test_the_pre_filter_skips_tool_errors_for_matchers_that_ignore_them() -> None:
    body = json.dumps(_tool_error("invalid token")).encode()
    assert not may_match(default_matcher, body)
    assert may_match(tool_error_matcher, body)


@given(st.recursive(_LEAVES, _json_children))
def test_a_skipped_body_never_matches(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        body = text.encode()
        for matcher in (default_matcher, tool_error_matcher):
            if not may_match(matcher, body):
                assert not matcher(json.loads(body))


def test_plain_success_is_skipped_only_for_built_in_matchers() -> None:
    body = json.dumps(_tool_error("authentication failed", is_error=False)).encode()
    assert not may_match(default_matcher, body)
    assert not may_match(pattern_matcher([r"x"]), body)
    assert may_match(lambda message: True, body)
