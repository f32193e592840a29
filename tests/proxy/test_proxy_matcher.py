"""The default auth-failure matcher and the first-SSE-event scanner."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from freshtoken.proxy import default_matcher, pattern_matcher
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
    _tool_error("Authentication failed (token revoked)"),
    # shapes seen in the wild
    _rpc_error("Unauthorized"),
    _rpc_error("Invalid or expired token", code=-32603),
    _rpc_error("Internal error", {"code": "invalid_token"}),
    _rpc_error("Upstream call failed", {"status": 401}),
    _rpc_error("Authentication required"),
    _rpc_error("Error", "access token has expired"),
    _tool_error("Error: 401 Unauthorized from upstream API"),
    [_rpc_error("fine", code=-1), _rpc_error("Unauthenticated")],
    {"error": "invalid_token"},
]

HEALTHY = [
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
