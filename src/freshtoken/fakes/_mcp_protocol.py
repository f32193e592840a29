"""The fake MCP server's socket-free core: JSON-RPC constants and messages, what a handler sees,
and the registry of methods, tools, resources and prompts a server answers.

The aiohttp adapter in ``_mcp_server`` owns HTTP, sessions and SSE; everything here is plain
data in, plain data out, so it is testable without a socket. The built-in methods live in
``_mcp_methods``, the built-in tools in ``_mcp_tools``, the built-in resources and prompts in
``_mcp_library``; ``_mcp_builtins`` puts them together.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from freshtoken._clock import Clock

if TYPE_CHECKING:
    from freshtoken.fakes._mcp_registry import Registry

__all__ = [
    "AUTH_ERROR",
    "CLIENT_CAPABILITIES_META_KEY",
    "HANDSHAKE_VERSIONS",
    "HEADER_MISMATCH",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "LOG_LEVELS",
    "LOG_LEVEL_META_KEY",
    "METHOD_NOT_FOUND",
    "MODERN_VERSIONS",
    "PARSE_ERROR",
    "PROTOCOL_VERSION_META_KEY",
    "REQUEST_CANCELLED",
    "RESOURCE_NOT_FOUND",
    "RESPONSE_MODE_META_KEY",
    "SERVER_INFO",
    "SERVER_INFO_META_KEY",
    "UNSUPPORTED_PROTOCOL_VERSION",
    "InputRequired",
    "InputRounds",
    "MethodHandler",
    "PeerState",
    "Request",
    "RpcError",
    "ToolContext",
    "auth_failure_message",
    "decode_cursor",
    "error_message",
    "page",
    "result_message",
]

HANDSHAKE_VERSIONS: Final = ("2025-03-26", "2025-06-18", "2025-11-25")
"""Revisions negotiated by ``initialize`` and carried by ``Mcp-Session-Id`` sessions."""
MODERN_VERSIONS: Final = ("2026-07-28",)
"""Stateless revisions: no handshake, every request carries its own ``_meta`` envelope."""

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
AUTH_ERROR: Final = -32001
RESOURCE_NOT_FOUND: Final = -32002
REQUEST_CANCELLED: Final = -32800
HEADER_MISMATCH: Final = -32020
UNSUPPORTED_PROTOCOL_VERSION: Final = -32022

PROTOCOL_VERSION_META_KEY: Final = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_META_KEY: Final = "io.modelcontextprotocol/clientCapabilities"
SERVER_INFO_META_KEY: Final = "io.modelcontextprotocol/serverInfo"
"""2026-07-28: where a result names the server (there is no ``initialize`` to say it)."""
LOG_LEVEL_META_KEY: Final = "io.modelcontextprotocol/logLevel"
"""2026-07-28: the log level a request asks for; without it the server sends no log messages."""
RESPONSE_MODE_META_KEY: Final = "freshtoken/responseMode"
"""``params._meta`` key a client may set to ``"json"`` or ``"sse"`` to pick this response's mode."""

LOG_LEVELS: Final = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)
"""RFC 5424 severities, least severe first, as ``logging/setLevel`` and log messages name them."""

SERVER_INFO: Final = {"name": "freshtoken-fake-mcp", "version": "0.1.0"}

Notify = Callable[[str, dict[str, Any]], Awaitable[None]]
Ask = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class RpcError(Exception):
    """A JSON-RPC error to send back to the client (raise it from any handler)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def error(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            body["data"] = self.data
        return body


class InputRequired(Exception):  # the protocol's own name for this outcome
    """2026-07-28: a handler needs the client's input first; the request answers with an
    ``input_required`` result and the client retries it carrying the answers."""

    def __init__(self, requests: dict[str, Any], answers: Mapping[str, Any]) -> None:
        super().__init__("input required")
        self.requests = requests
        self.answers = dict(answers)

    def result(self) -> dict[str, Any]:
        state = json.dumps(self.answers, separators=(",", ":")).encode()
        return {
            "resultType": "input_required",
            "inputRequests": self.requests,
            "requestState": base64.urlsafe_b64encode(state).decode(),
        }


class InputRounds:
    """How a 2026-07-28 handler asks the client something: by multi-round-trip requests.

    The handler runs again on every retry; its Nth question is answered by the Nth answer the
    client has given so far (carried back in ``inputResponses``, earlier rounds in the opaque
    ``requestState``), so a handler written as a straight sequence of questions works unchanged.
    """

    def __init__(self, params: Mapping[str, Any]) -> None:
        self._answers: dict[str, Any] = {}
        state = params.get("requestState")
        if state is not None:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(str(state).encode()))
            except (ValueError, binascii.Error):
                raise RpcError(
                    INVALID_PARAMS, "requestState is not one this server issued"
                ) from None
            if not isinstance(decoded, dict):
                raise RpcError(INVALID_PARAMS, "requestState is not one this server issued")
            self._answers.update(decoded)
        responses = params.get("inputResponses")
        if isinstance(responses, Mapping):
            self._answers.update(responses)
        self._asked = 0

    async def ask(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._asked += 1
        key = f"q{self._asked}"
        answer = self._answers.get(key)
        if isinstance(answer, dict):
            return answer
        raise InputRequired({key: {"method": method, "params": params}}, self._answers)


@dataclass(slots=True)
class PeerState:
    """What a session remembers about its client: capabilities, log level, subscriptions."""

    client_capabilities: dict[str, Any] = field(default_factory=dict)
    client_info: dict[str, Any] = field(default_factory=dict)
    log_level: str | None = "debug"
    """The least severe level sent; ``None`` sends no log messages."""
    subscriptions: set[str] = field(default_factory=set)


async def _real_time_pause(seconds: float) -> None:
    await asyncio.sleep(seconds)


@dataclass(slots=True)
class ToolContext:
    """What a tool, resource or prompt handler may use while it answers one request.

    ``clock`` is the fake's clock (paced tools sleep on it, so tests drive them); ``notify``
    sends a notification on the request's stream; ``token_fingerprint`` is the bearer the
    request carried (fingerprint only); ``progress_token`` the client's ``_meta.progressToken``.
    """

    clock: Clock
    notify: Notify
    token_fingerprint: str | None = None
    progress_token: str | int | None = None
    request_id: Any = None
    protocol_version: str = "2025-11-25"
    client_capabilities: Mapping[str, Any] = field(default_factory=dict)
    log_level: str | None = "debug"
    ask: Ask | None = None
    close_stream: Callable[[], None] | None = None
    pause: Callable[[float], Awaitable[None]] = _real_time_pause
    """A short wait in real time: what the conformance tools' "~50 ms" delays run on, so they
    finish whatever the fake's clock does."""

    def can(self, capability: str) -> bool:
        """Whether the client declared ``capability`` (``"sampling"``, ``"elicitation"``, …)."""
        return isinstance(self.client_capabilities.get(capability), Mapping)

    async def progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Send ``notifications/progress`` if the client asked for progress."""
        if self.progress_token is None:
            return
        params: dict[str, Any] = {"progressToken": self.progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self.notify("notifications/progress", params)

    async def log(self, level: str, data: Any, logger: str | None = None) -> None:
        """Send ``notifications/message`` if ``level`` is at or above the client's chosen level."""
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level {level!r}")
        if self.log_level is None or LOG_LEVELS.index(level) < LOG_LEVELS.index(self.log_level):
            return
        params: dict[str, Any] = {"level": level, "data": data}
        if logger is not None:
            params["logger"] = logger
        await self.notify("notifications/message", params)

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Ask the client (``sampling/createMessage``, ``elicitation/create``, ``roots/list``)
        and return its result; a JSON-RPC error from the client is raised as :class:`RpcError`."""
        if self.ask is None:
            raise RpcError(INTERNAL_ERROR, f"cannot send {method} to this client")
        return await self.ask(method, params)

    def end_stream(self) -> None:
        """End the SSE response now, leaving the request running (SEP-1699 polling): the client
        reconnects with ``Last-Event-ID`` and gets the rest. Nothing to do on a JSON response."""
        if self.close_stream is not None:
            self.close_stream()


def result_message(request_id: Any, result: Mapping[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": dict(result)}


def error_message(request_id: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error.error()}


def auth_failure_message(shape: str, request_id: Any, rpc_method: str | None, reason: str) -> Any:
    """The 200-status body for an authentication failure in one of the real-world shapes.

    ``jsonrpc``: a JSON-RPC error whose message and data carry ``authentication_failed``.
    ``posthog``: the bare ``{"error": {"code": "authentication_failed"}}`` object.
    ``tool-error``: a ``tools/call`` result with ``isError`` and an authentication message;
    for any other method that shape cannot exist, so the ``jsonrpc`` shape is used.
    """
    text = f"authentication_failed: {reason}"
    if shape == "posthog":
        return {"error": {"code": "authentication_failed", "message": text}}
    if shape == "tool-error" and rpc_method == "tools/call":
        return result_message(
            request_id,
            {
                "content": [{"type": "text", "text": f"Authentication failed ({reason})"}],
                "isError": True,
            },
        )
    return error_message(
        request_id,
        RpcError(AUTH_ERROR, text, {"error": "authentication_failed", "reason": reason}),
    )


MethodHandler = Callable[["Request"], Awaitable[dict[str, Any]]]
"""A JSON-RPC method: the request in, its result out (or :class:`RpcError`)."""


@dataclass(frozen=True, slots=True)
class Request:
    """One JSON-RPC request as a method handler sees it."""

    method: str
    params: Mapping[str, Any]
    ctx: ToolContext
    protocol_version: str
    registry: Registry
    state: PeerState = field(default_factory=PeerState)

    @property
    def modern(self) -> bool:
        return self.protocol_version in MODERN_VERSIONS


def decode_cursor(cursor: Any) -> int:
    """The list offset a ``cursor`` this server issued stands for."""
    if cursor is None:
        return 0
    try:
        offset = int(base64.urlsafe_b64decode(str(cursor).encode()).decode().removeprefix("o"))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise RpcError(INVALID_PARAMS, f"invalid cursor {cursor!r}") from None
    if offset < 0:
        raise RpcError(INVALID_PARAMS, f"invalid cursor {cursor!r}")
    return offset


def page(items: list[Any], params: Mapping[str, Any], size: int) -> tuple[list[Any], str | None]:
    """One page of ``items`` from ``params.cursor``, and the cursor of the next page (if any)."""
    start = decode_cursor(params.get("cursor"))
    if start > len(items):
        raise RpcError(INVALID_PARAMS, "cursor is past the end of the list")
    end = start + size
    following = base64.urlsafe_b64encode(f"o{end}".encode()).decode() if end < len(items) else None
    return items[start:end], following
