"""The built-in tools: freshtoken's own (``echo``, ``add``, ``whoami``, ``stream``,
``list_roots``) and the MCP conformance suite's ``test_*`` tools, which together cover every
kind of tool result (text, image, audio, embedded resource, mixed, errors) and every way a tool
talks to its client while it runs (progress, logging, sampling, elicitation, roots, SEP-1699
stream polling)."""

from __future__ import annotations

import base64
import io
import json
import math
import wave
from collections.abc import Mapping
from typing import Any, Final

from freshtoken.fakes._mcp_protocol import INVALID_PARAMS, RpcError, ToolContext
from freshtoken.fakes._mcp_registry import Registry

__all__ = ["PNG_BASE64", "WAV_BASE64", "register_tools"]

PNG_BASE64: Final = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)
"""A 1x1 red PNG."""


def _silence() -> str:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(8000)
        out.writeframes(b"\x80" * 8)
    return base64.b64encode(buffer.getvalue()).decode()


WAV_BASE64: Final = _silence()
"""One millisecond of 8 kHz mono silence."""

MAX_STREAM_COUNT: Final = 10_000
MAX_PACE: Final = 3600.0
_STEP: Final = 0.05


def _text(text: str, *, is_error: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}]}
    if is_error:
        result["isError"] = True
    return result


def _number(args: Mapping[str, Any], name: str) -> float:
    value = args.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RpcError(INVALID_PARAMS, f"argument {name!r} must be a finite number")
    return float(value)


def _schema(properties: Mapping[str, Any], *required: str) -> dict[str, Any]:
    return {"type": "object", "properties": dict(properties), "required": list(required)}


_STRING: Final = {"type": "string"}


async def _ask_client(
    ctx: ToolContext, capability: str, method: str, params: dict[str, Any]
) -> Any:
    if not ctx.can(capability):
        raise _Refused(f"the client did not declare the {capability} capability")
    return await ctx.request(method, params)


class _Refused(Exception):
    """The client cannot be asked what the tool needs: the tool answers with a tool error."""


def _elicited(answer: Mapping[str, Any]) -> str:
    return f"action={answer.get('action')}, content={json.dumps(answer.get('content', {}))}"


def register_tools(registry: Registry) -> None:
    """Register the built-in tools on ``registry``."""

    @registry.tool("echo", "Return the given text.", _schema({"text": _STRING}, "text"))
    async def echo(args: Mapping[str, Any], ctx: ToolContext) -> Any:
        return _text(str(args["text"]))

    @registry.tool(
        "add",
        "Add two numbers.",
        _schema({"a": {"type": "number"}, "b": {"type": "number"}}, "a", "b"),
    )
    async def add(args: Mapping[str, Any], ctx: ToolContext) -> Any:
        total = _number(args, "a") + _number(args, "b")
        if not math.isfinite(total):
            raise RpcError(INVALID_PARAMS, "the sum is not a finite number")
        return _text(str(int(total)) if total.is_integer() else str(total))

    @registry.tool("whoami", "Return the fingerprint of the bearer token this request carried.")
    async def whoami(args: Mapping[str, Any], ctx: ToolContext) -> Any:
        return _text(ctx.token_fingerprint or "anonymous")

    @registry.tool(
        "stream",
        "Send `count` progress notifications, `pace` seconds apart on the fake's clock, then a result.",
        {
            "type": "object",
            "properties": {
                "count": {"type": "integer", "minimum": 0, "maximum": MAX_STREAM_COUNT},
                "pace": {"type": "number", "minimum": 0, "maximum": MAX_PACE},
            },
        },
    )
    async def stream(args: Mapping[str, Any], ctx: ToolContext) -> Any:
        count = int(args.get("count", 3))
        pace = _number({"pace": args.get("pace", 0.0)}, "pace")
        # A paced event sequence is the tool's whole purpose, so it streams even when the
        # client sent no progressToken, under a token derived from the request id.
        token = ctx.progress_token if ctx.progress_token is not None else f"stream-{ctx.request_id}"
        for i in range(1, count + 1):
            if pace:
                await ctx.clock.sleep(pace)
            await ctx.notify(
                "notifications/progress", {"progressToken": token, "progress": i, "total": count}
            )
        return _text(f"streamed {count} events")

    @registry.tool("list_roots", "Ask the client for its roots (roots/list) and return them.")
    async def list_roots(args: Mapping[str, Any], ctx: ToolContext) -> Any:
        try:
            answer = await _ask_client(ctx, "roots", "roots/list", {})
        except _Refused as refused:
            return _text(str(refused), is_error=True)
        return _text(json.dumps(answer.get("roots", [])))

    _conformance_tools(registry)


def _conformance_tools(registry: Registry) -> None:
    """The tools the MCP conformance suite's server scenarios call, as its descriptions ask."""

    @registry.tool("test_simple_text", "Conformance: return simple text.")
    async def simple_text(args: Mapping[str, Any], ctx: ToolContext) -> Any:
        return _text("This is a simple text response for testing.")

    @registry.tool("test_image_content", "Conformance: return an image.")
    async def image(args: Mapping[str, Any], ctx: ToolContext) -> Any:
        return [{"type": "image", "data": PNG_BASE64, "mimeType": "image/png"}]

    @registry.tool("test_audio_content", "Conformance: return audio.")
    async def audio(args: Mapping[str, Any], ctx: ToolContext) -> Any:
        return [{"type": "audio", "data": WAV_BASE64, "mimeType": "audio/wav"}]

    @registry.tool("test_embedded_resource", "Conformance: return an embedded resource.")
    async def embedded(args: Mapping[str, Any], ctx: ToolContext) -> Any:
        resource = {
            "uri": "test://embedded-resource",
            "mimeType": "text/plain",
            "text": "This is an embedded resource content.",
        }
        return [{"type": "resource", "resource": resource}]

    @registry.tool("test_multiple_content_types", "Conformance: return text, image and a resource.")
    async def mixed(args: Mapping[str, Any], ctx: ToolContext) -> Any:
        resource = {
            "uri": "test://mixed-content-resource",
            "mimeType": "application/json",
            "text": json.dumps({"test": "data", "value": 123}),
        }
        return [
            {"type": "text", "text": "Multiple content types test:"},
            {"type": "image", "data": PNG_BASE64, "mimeType": "image/png"},
            {"type": "resource", "resource": resource},
        ]

    @registry.tool("test_error_handling", "Conformance: always return a tool error.")
    async def error(args: Mapping[str, Any], ctx: ToolContext) -> Any:
        return _text("This tool intentionally returns an error for testing", is_error=True)

    @registry.tool("test_tool_with_logging", "Conformance: send three info log messages.")
    async def logging(args: Mapping[str, Any], ctx: ToolContext) -> Any:
        for step, text in enumerate(
            ("Tool execution started", "Tool processing data", "Tool execution completed")
        ):
            if step:
                await ctx.pause(_STEP)
            await ctx.log("info", text, "test_tool_with_logging")
        return _text("Tool with logging executed successfully")

    @registry.tool("test_tool_with_progress", "Conformance: report progress 0, 50 and 100 of 100.")
    async def progress(args: Mapping[str, Any], ctx: ToolContext) -> Any:
        for step, value in enumerate((0.0, 50.0, 100.0)):
            if step:
                await ctx.pause(_STEP)
            await ctx.progress(value, 100.0)
        return _text("Progress tool completed")

    @registry.tool(
        "test_sampling",
        "Conformance: ask the client's LLM (sampling/createMessage).",
        _schema({"prompt": _STRING}, "prompt"),
    )
    async def sampling(args: Mapping[str, Any], ctx: ToolContext) -> Any:
        message = {"role": "user", "content": {"type": "text", "text": str(args["prompt"])}}
        try:
            answer = await _ask_client(
                ctx, "sampling", "sampling/createMessage", {"messages": [message], "maxTokens": 100}
            )
        except _Refused as refused:
            return _text(str(refused), is_error=True)
        content = answer.get("content")
        text = content.get("text") if isinstance(content, Mapping) else None
        return _text(f"LLM response: {text if isinstance(text, str) else json.dumps(content)}")

    @registry.tool(
        "test_elicitation",
        "Conformance: ask the user for a username and an email (elicitation/create).",
        _schema({"message": _STRING}, "message"),
    )
    async def elicitation(args: Mapping[str, Any], ctx: ToolContext) -> Any:
        schema = _schema(
            {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"},
            },
            "username",
            "email",
        )
        return await _elicit(ctx, str(args["message"]), schema, "User response: ")

    @registry.tool(
        "test_elicitation_sep1034_defaults",
        "Conformance: elicitation with a default for every primitive type (SEP-1034).",
    )
    async def defaults(args: Mapping[str, Any], ctx: ToolContext) -> Any:
        schema = _schema(
            {
                "name": {"type": "string", "default": "John Doe"},
                "age": {"type": "integer", "default": 30},
                "score": {"type": "number", "default": 95.5},
                "status": {
                    "type": "string",
                    "enum": ["active", "inactive", "pending"],
                    "default": "active",
                },
                "verified": {"type": "boolean", "default": True},
            }
        )
        return await _elicit(ctx, "Please review your details", schema, "Elicitation completed: ")

    @registry.tool(
        "test_elicitation_sep1330_enums",
        "Conformance: elicitation with the five enum schema variants (SEP-1330).",
    )
    async def enums(args: Mapping[str, Any], ctx: ToolContext) -> Any:
        options = ["option1", "option2", "option3"]
        titled = [
            {"const": "value1", "title": "First Option"},
            {"const": "value2", "title": "Second Option"},
            {"const": "value3", "title": "Third Option"},
        ]
        schema = _schema(
            {
                "untitledSingle": {"type": "string", "enum": options},
                "titledSingle": {"type": "string", "oneOf": titled},
                "legacyEnum": {
                    "type": "string",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"],
                },
                "untitledMulti": {"type": "array", "items": {"type": "string", "enum": options}},
                "titledMulti": {"type": "array", "items": {"anyOf": titled}},
            }
        )
        return await _elicit(ctx, "Please choose", schema, "Elicitation completed: ")

    @registry.tool(
        "json_schema_2020_12_tool",
        "Tool with JSON Schema 2020-12 features",
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {
                "address": {
                    "type": "object",
                    "properties": {"street": _STRING, "city": _STRING},
                }
            },
            "properties": {"name": _STRING, "address": {"$ref": "#/$defs/address"}},
            "additionalProperties": False,
        },
    )
    async def json_schema(args: Mapping[str, Any], ctx: ToolContext) -> Any:
        return _text(json.dumps(dict(args), sort_keys=True))

    @registry.tool(
        "test_reconnection",
        "Conformance: close the SSE stream mid-call; the result follows the reconnection (SEP-1699).",
    )
    async def reconnection(args: Mapping[str, Any], ctx: ToolContext) -> Any:
        ctx.end_stream()
        return _text("Reconnection test completed")


async def _elicit(ctx: ToolContext, message: str, schema: dict[str, Any], prefix: str) -> Any:
    try:
        answer = await _ask_client(
            ctx,
            "elicitation",
            "elicitation/create",
            {"message": message, "requestedSchema": schema},
        )
    except _Refused as refused:
        return _text(str(refused), is_error=True)
    return _text(prefix + _elicited(answer))
