"""The built-in resources, resource template and prompts: the ones the MCP conformance suite's
server scenarios read and get (text, binary, templated, watched; simple, with arguments, with
an embedded resource, with an image)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from freshtoken.fakes._mcp_protocol import ToolContext
from freshtoken.fakes._mcp_registry import PromptArgument, Registry
from freshtoken.fakes._mcp_tools import PNG_BASE64

__all__ = ["register_library"]


def _user(content: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": content}


def register_library(registry: Registry) -> None:
    """Register the built-in resources, template and prompts on ``registry``."""

    @registry.resource(
        "test://static-text",
        "static-text",
        description="A static text resource",
        mime_type="text/plain",
    )
    async def static_text(uri: str, args: Mapping[str, str], ctx: ToolContext) -> Any:
        return "This is the content of the static text resource."

    @registry.resource(
        "test://static-binary",
        "static-binary",
        description="A static binary resource (a 1x1 PNG)",
        mime_type="image/png",
    )
    async def static_binary(uri: str, args: Mapping[str, str], ctx: ToolContext) -> Any:
        return base64.b64decode(PNG_BASE64)

    @registry.resource(
        "test://watched-resource",
        "watched-resource",
        description="A resource to subscribe to (notifications/resources/updated)",
        mime_type="text/plain",
    )
    async def watched(uri: str, args: Mapping[str, str], ctx: ToolContext) -> Any:
        return "Watched resource content"

    @registry.resource_template(
        "test://template/{id}/data",
        "template-data",
        description="Data for an id, substituted into the URI",
        mime_type="application/json",
        completions={"id": ["123", "456", "789"]},
    )
    async def template(uri: str, args: Mapping[str, str], ctx: ToolContext) -> Any:
        item = args["id"]
        return json.dumps({"id": item, "templateTest": True, "data": f"Data for ID: {item}"})

    @registry.prompt("test_simple_prompt", "A simple prompt without arguments")
    async def simple(args: Mapping[str, str], ctx: ToolContext) -> Any:
        return "This is a simple prompt for testing."

    @registry.prompt(
        "test_prompt_with_arguments",
        "A prompt with two required arguments",
        [
            PromptArgument("arg1", "First test argument", required=True),
            PromptArgument("arg2", "Second test argument", required=True),
        ],
        completions={"arg1": ["paris", "park", "party"], "arg2": ["world", "wide"]},
    )
    async def with_arguments(args: Mapping[str, str], ctx: ToolContext) -> Any:
        return f"Prompt with arguments: arg1='{args['arg1']}', arg2='{args['arg2']}'"

    @registry.prompt(
        "test_prompt_with_embedded_resource",
        "A prompt embedding the resource it is given",
        [PromptArgument("resourceUri", "URI of the resource to embed", required=True)],
    )
    async def embedded(args: Mapping[str, str], ctx: ToolContext) -> Any:
        resource = {
            "uri": args["resourceUri"],
            "mimeType": "text/plain",
            "text": "Embedded resource content for testing.",
        }
        return [
            _user({"type": "resource", "resource": resource}),
            _user({"type": "text", "text": "Please process the embedded resource above."}),
        ]

    @registry.prompt("test_prompt_with_image", "A prompt with an image")
    async def image(args: Mapping[str, str], ctx: ToolContext) -> Any:
        return [
            _user({"type": "image", "data": PNG_BASE64, "mimeType": "image/png"}),
            _user({"type": "text", "text": "Please analyze the image above."}),
        ]
