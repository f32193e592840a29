"""The fake MCP server's socket-free core: JSON-RPC dispatch, tools, and auth-failure bodies.

The aiohttp adapter in ``_mcp_server`` owns HTTP, sessions and SSE; everything here is
plain data in, plain data out, so it is testable without a socket.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from freshtoken._clock import Clock

__all__ = [
    "AUTH_ERROR",
    "BUILTINS",
    "CLIENT_CAPABILITIES_META_KEY",
    "HANDSHAKE_VERSIONS",
    "HEADER_MISMATCH",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "MODERN_VERSIONS",
    "PARSE_ERROR",
    "PROTOCOL_VERSION_META_KEY",
    "RESPONSE_MODE_META_KEY",
    "UNSUPPORTED_PROTOCOL_VERSION",
    "MethodHandler",
    "Registry",
    "Request",
    "RpcError",
    "Tool",
    "ToolContext",
    "ToolHandler",
    "auth_failure_message",
    "dispatch",
    "error_message",
    "result_message",
    "tool_names",
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
HEADER_MISMATCH: Final = -32020
UNSUPPORTED_PROTOCOL_VERSION: Final = -32022

PROTOCOL_VERSION_META_KEY: Final = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_META_KEY: Final = "io.modelcontextprotocol/clientCapabilities"
RESPONSE_MODE_META_KEY: Final = "freshtoken/responseMode"
"""``params._meta`` key a client may set to ``"json"`` or ``"sse"`` to pick this response's mode."""

SERVER_INFO: Final = {"name": "freshtoken-fake-mcp", "version": "0.1.0"}

Notify = Callable[[str, dict[str, Any]], Awaitable[None]]


class RpcError(Exception):
    """A JSON-RPC error to send back to the client."""

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


@dataclass(slots=True)
class ToolContext:
    """What a tool may use: the bearer it saw, the fake's clock, and a notification sink."""

    clock: Clock
    notify: Notify
    token_fingerprint: str | None
    progress_token: str | int | None
    request_id: Any


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


_OBJECT: Final = {"type": "object"}

ToolHandler = Callable[[Mapping[str, Any], ToolContext], Awaitable[dict[str, Any]]]
"""A tool: its arguments and context in, a ``tools/call`` result out (or :class:`RpcError`)."""
MethodHandler = Callable[["Request"], Awaitable[dict[str, Any]]]
"""A JSON-RPC method: the request in, its result out (or :class:`RpcError`)."""


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool the fake serves: what ``tools/list`` says about it, and what runs on a call."""

    name: str
    description: str
    input_schema: Mapping[str, Any]
    handler: ToolHandler

    def listing(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "inputSchema": dict(self.input_schema),
        }


@dataclass(frozen=True, slots=True)
class Request:
    """One JSON-RPC request as a method handler sees it."""

    method: str
    params: Mapping[str, Any]
    ctx: ToolContext
    protocol_version: str
    registry: Registry

    @property
    def modern(self) -> bool:
        return self.protocol_version in MODERN_VERSIONS


class Registry:
    """The JSON-RPC methods and the tools a fake MCP server answers, by name.

    The module keeps the built-in set (:data:`BUILTINS`); each server answers from its own
    :meth:`copy`, so adding a method or a tool to one server leaves the others as they were.
    """

    def __init__(self) -> None:
        self.methods: dict[str, MethodHandler] = {}
        self.tools: dict[str, Tool] = {}

    def method(self, name: str) -> Callable[[MethodHandler], MethodHandler]:
        """Decorator: answer JSON-RPC method ``name`` with the decorated handler."""

        def register(handler: MethodHandler) -> MethodHandler:
            self.methods[name] = handler
            return handler

        return register

    def tool(
        self, name: str, description: str, input_schema: Mapping[str, Any] = _OBJECT
    ) -> Callable[[ToolHandler], ToolHandler]:
        """Decorator: serve the decorated handler as tool ``name``."""

        def register(handler: ToolHandler) -> ToolHandler:
            self.tools[name] = Tool(name, description, input_schema, handler)
            return handler

        return register

    def copy(self) -> Registry:
        registry = Registry()
        registry.methods.update(self.methods)
        registry.tools.update(self.tools)
        return registry

    async def dispatch(
        self, method: str, params: Mapping[str, Any], ctx: ToolContext, *, protocol_version: str
    ) -> dict[str, Any]:
        """Answer one JSON-RPC request; raise :class:`RpcError` for a JSON-RPC error."""
        handler = self.methods.get(method)
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")
        request = Request(method, params, ctx, protocol_version, self)
        result = await handler(request)
        if request.modern:
            result["resultType"] = "complete"
        return result


BUILTINS: Final = Registry()
"""The methods and tools every fake MCP server starts with."""


def tool_names() -> list[str]:
    """Names of the built-in tools."""
    return list(BUILTINS.tools)


def _text(text: str, *, is_error: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}]}
    if is_error:
        result["isError"] = True
    return result


def _number(args: Mapping[str, Any], name: str, default: float | None = None) -> float:
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RpcError(INVALID_PARAMS, f"argument {name!r} must be a number")
    return float(value)


async def _progress(
    ctx: ToolContext, token: str | int, progress: float, total: float | None
) -> None:
    params: dict[str, Any] = {"progressToken": token, "progress": progress}
    if total is not None:
        params["total"] = total
    await ctx.notify("notifications/progress", params)


# ---- built-in tools ------------------------------------------------------------------------


@BUILTINS.tool(
    "echo",
    "Return the given text.",
    {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
)
async def _echo(args: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    text = args.get("text")
    if not isinstance(text, str):
        raise RpcError(INVALID_PARAMS, "argument 'text' must be a string")
    return _text(text)


@BUILTINS.tool(
    "add",
    "Add two numbers.",
    {
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
    },
)
async def _add(args: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    total = _number(args, "a") + _number(args, "b")
    return _text(str(int(total)) if total.is_integer() else str(total))


@BUILTINS.tool("whoami", "Return the fingerprint of the bearer token this request carried.")
async def _whoami(args: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return _text(ctx.token_fingerprint or "anonymous")


@BUILTINS.tool(
    "stream",
    "Send `count` progress notifications, `pace` seconds apart, then a result.",
    {
        "type": "object",
        "properties": {
            "count": {"type": "integer", "minimum": 0},
            "pace": {"type": "number", "minimum": 0},
        },
    },
)
async def _stream(args: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    count = int(_number(args, "count", 3))
    pace = _number(args, "pace", 0.0)
    if count < 0 or pace < 0:
        raise RpcError(INVALID_PARAMS, "'count' and 'pace' must be >= 0")
    # A paced event sequence is the tool's whole purpose, so it streams even when the
    # client sent no progressToken, under a token derived from the request id.
    token = ctx.progress_token if ctx.progress_token is not None else f"stream-{ctx.request_id}"
    for i in range(1, count + 1):
        if pace:
            await ctx.clock.sleep(pace)
        await _progress(ctx, token, i, count)
    return _text(f"streamed {count} events")


@BUILTINS.tool("test_simple_text", "Conformance: return simple text.")
async def _simple_text(args: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return _text("This is a simple text response for testing.")


@BUILTINS.tool("test_error_handling", "Conformance: always return a tool error.")
async def _error_handling(args: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return _text("This tool intentionally returns an error for testing", is_error=True)


@BUILTINS.tool("test_tool_with_progress", "Conformance: report progress 0, 50 and 100 of 100.")
async def _tool_with_progress(args: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    for step, progress in enumerate((0.0, 50.0, 100.0)):
        if step:
            await ctx.clock.sleep(0.05)
        if ctx.progress_token is not None:
            await _progress(ctx, ctx.progress_token, progress, 100.0)
    return _text("Progress tool completed")


# ---- built-in methods ----------------------------------------------------------------------


def _capabilities(registry: Registry) -> dict[str, Any]:
    return {"tools": {"listChanged": False}} if registry.tools else {}


@BUILTINS.method("initialize")
async def _initialize(request: Request) -> dict[str, Any]:
    if request.modern:
        raise RpcError(METHOD_NOT_FOUND, "Method not found: initialize")
    requested = request.params.get("protocolVersion")
    version = request.protocol_version
    supported = HANDSHAKE_VERSIONS[: HANDSHAKE_VERSIONS.index(version) + 1]
    return {
        "protocolVersion": requested if requested in supported else version,
        "capabilities": _capabilities(request.registry),
        "serverInfo": SERVER_INFO,
    }


@BUILTINS.method("server/discover")
async def _discover(request: Request) -> dict[str, Any]:
    if not request.modern:
        raise RpcError(METHOD_NOT_FOUND, "Method not found: server/discover")
    return {
        "supportedVersions": list(MODERN_VERSIONS),
        "capabilities": _capabilities(request.registry),
        "serverInfo": SERVER_INFO,
        "ttlMs": 0,
        "cacheScope": "private",
    }


@BUILTINS.method("ping")
async def _ping(request: Request) -> dict[str, Any]:
    return {}


@BUILTINS.method("tools/list")
async def _tools_list(request: Request) -> dict[str, Any]:
    result: dict[str, Any] = {"tools": [tool.listing() for tool in request.registry.tools.values()]}
    if request.modern:
        result.update(ttlMs=0, cacheScope="private")
    return result


@BUILTINS.method("tools/call")
async def _tools_call(request: Request) -> dict[str, Any]:
    args = request.params.get("arguments") or {}
    if not isinstance(args, Mapping):
        raise RpcError(INVALID_PARAMS, "'arguments' must be an object")
    name = request.params.get("name")
    tool = request.registry.tools.get(name) if isinstance(name, str) else None
    if tool is None:
        raise RpcError(INVALID_PARAMS, f"unknown tool {name!r}")
    return await tool.handler(args, request.ctx)


async def dispatch(
    method: str, params: Mapping[str, Any], ctx: ToolContext, *, protocol_version: str
) -> dict[str, Any]:
    """Answer one JSON-RPC request from the built-in set; raise :class:`RpcError` for an error."""
    return await BUILTINS.dispatch(method, params, ctx, protocol_version=protocol_version)
