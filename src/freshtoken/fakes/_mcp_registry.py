"""The registry of what a fake MCP server answers: JSON-RPC methods, tools, resources, resource
templates and prompts, by name.

The module ``_mcp_builtins`` fills the built-in registry; each server answers from its own
:meth:`Registry.copy`, so what a test adds to one server leaves the others as they were. Handlers
are plain async functions; what they return is normalized into the protocol's result shape here.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from jsonschema import SchemaError, validators
from jsonschema.exceptions import best_match

from freshtoken._errors import ConfigError
from freshtoken.fakes._mcp_protocol import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    SERVER_INFO,
    SERVER_INFO_META_KEY,
    InputRequired,
    MethodHandler,
    PeerState,
    Request,
    RpcError,
    ToolContext,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "Completer",
    "Prompt",
    "PromptArgument",
    "PromptHandler",
    "Registry",
    "Resource",
    "ResourceHandler",
    "ResourceTemplate",
    "Tool",
    "ToolHandler",
]

DEFAULT_PAGE_SIZE: Final = 100
"""List results per page unless a server says otherwise."""

_OBJECT: Final = {"type": "object"}
_MAX_COMPLETIONS: Final = 100
# RFC 6570 level 1: "{name}" matches one path segment.
_VARIABLE: Final = re.compile(r"\{([A-Za-z0-9_]+)\}")

ToolHandler = Callable[[Mapping[str, Any], ToolContext], Awaitable[Any]]
"""A tool: its arguments and context in; a ``tools/call`` result out — a dict (the whole
result), a string (one text item) or a list (the content items) — or :class:`RpcError`."""
ResourceHandler = Callable[[str, Mapping[str, str], ToolContext], Awaitable[Any]]
"""A resource read: the URI, the template variables it matched (empty for a plain resource) and
the context in; text (``str``), bytes (a blob), one contents dict or a list of them out."""
PromptHandler = Callable[[Mapping[str, str], ToolContext], Awaitable[Any]]
"""A prompt: its arguments and context in; a ``prompts/get`` result dict, a list of messages,
or a string (one user text message) out."""
Completer = Sequence[str] | Callable[[str, Mapping[str, str]], Awaitable[Sequence[str]]]
"""Completion values for one argument: a fixed list (filtered by the typed prefix), or an async
function of the typed value and the other arguments' values."""


def _compile(schema: Mapping[str, Any], where: str) -> Any:
    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise ConfigError.at(where, "input_schema", exc.message) from None
    return cls(schema)


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool the fake serves: what ``tools/list`` says about it, and what runs on a call.

    Arguments are checked against ``input_schema`` (JSON Schema, 2020-12 unless it names
    another draft) before the handler runs; a violation is a ``-32602`` error.
    """

    name: str
    description: str
    input_schema: Mapping[str, Any]
    handler: ToolHandler
    title: str | None = None
    annotations: Mapping[str, Any] | None = None
    output_schema: Mapping[str, Any] | None = None
    validator: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.validator is None:
            object.__setattr__(self, "validator", _compile(self.input_schema, f"tool {self.name}"))

    def listing(self) -> dict[str, Any]:
        listing: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "inputSchema": dict(self.input_schema),
        }
        if self.title is not None:
            listing["title"] = self.title
        if self.annotations is not None:
            listing["annotations"] = dict(self.annotations)
        if self.output_schema is not None:
            listing["outputSchema"] = dict(self.output_schema)
        return listing

    async def call(self, args: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        error = best_match(self.validator.iter_errors(dict(args)))
        if error is not None:
            where = "/".join(str(part) for part in error.absolute_path) or "(arguments)"
            raise RpcError(
                INVALID_PARAMS, f"invalid arguments for {self.name}: {where}: {error.message}"
            )
        result = await self.handler(args, ctx)
        if isinstance(result, str):
            return {"content": [{"type": "text", "text": result}]}
        if isinstance(result, list):
            return {"content": result}
        if not isinstance(result, dict):
            raise TypeError(f"tool {self.name} returned {type(result).__name__}, not a result")
        return result


@dataclass(frozen=True, slots=True)
class Resource:
    """A resource with a fixed URI."""

    uri: str
    name: str
    handler: ResourceHandler
    description: str = ""
    mime_type: str | None = None
    title: str | None = None

    def listing(self) -> dict[str, Any]:
        listing: dict[str, Any] = {"uri": self.uri, "name": self.name}
        listing["description"] = self.description
        if self.mime_type is not None:
            listing["mimeType"] = self.mime_type
        if self.title is not None:
            listing["title"] = self.title
        return listing

    async def read(self, uri: str, args: Mapping[str, str], ctx: ToolContext) -> dict[str, Any]:
        return {"contents": _contents(uri, self.mime_type, await self.handler(uri, args, ctx))}


@dataclass(frozen=True, slots=True)
class ResourceTemplate:
    """Resources whose URIs match an RFC 6570 level-1 template (``test://items/{id}``)."""

    uri_template: str
    name: str
    handler: ResourceHandler
    description: str = ""
    mime_type: str | None = None
    title: str | None = None
    completions: Mapping[str, Completer] = field(default_factory=dict)

    def listing(self) -> dict[str, Any]:
        listing: dict[str, Any] = {"uriTemplate": self.uri_template, "name": self.name}
        listing["description"] = self.description
        if self.mime_type is not None:
            listing["mimeType"] = self.mime_type
        if self.title is not None:
            listing["title"] = self.title
        return listing

    def match(self, uri: str) -> dict[str, str] | None:
        parts = _VARIABLE.split(self.uri_template)
        pattern = "".join(
            re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
        )
        found = re.fullmatch(pattern, uri)
        return found.groupdict() if found else None

    async def read(self, uri: str, args: Mapping[str, str], ctx: ToolContext) -> dict[str, Any]:
        return {"contents": _contents(uri, self.mime_type, await self.handler(uri, args, ctx))}


@dataclass(frozen=True, slots=True)
class PromptArgument:
    """One argument a prompt takes."""

    name: str
    description: str = ""
    required: bool = False

    def listing(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "required": self.required}


@dataclass(frozen=True, slots=True)
class Prompt:
    """A prompt template: its arguments, and what renders it."""

    name: str
    description: str
    handler: PromptHandler
    arguments: tuple[PromptArgument, ...] = ()
    title: str | None = None
    completions: Mapping[str, Completer] = field(default_factory=dict)

    def listing(self) -> dict[str, Any]:
        listing: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.arguments:
            listing["arguments"] = [argument.listing() for argument in self.arguments]
        if self.title is not None:
            listing["title"] = self.title
        return listing

    async def get(self, args: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        missing = [a.name for a in self.arguments if a.required and a.name not in args]
        if missing:
            raise RpcError(INVALID_PARAMS, f"prompt {self.name} needs argument(s) {missing}")
        wrong = [name for name, value in args.items() if not isinstance(value, str)]
        if wrong:
            raise RpcError(INVALID_PARAMS, f"prompt arguments must be strings: {wrong}")
        result = await self.handler(args, ctx)
        if isinstance(result, str):
            result = [{"role": "user", "content": {"type": "text", "text": result}}]
        if isinstance(result, list):
            result = {"messages": result}
        if not isinstance(result, dict):
            raise TypeError(f"prompt {self.name} returned {type(result).__name__}")
        result.setdefault("description", self.description)
        return result


def _contents(uri: str, mime_type: str | None, value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [value]
    item: dict[str, Any] = {"uri": uri}
    if mime_type is not None:
        item["mimeType"] = mime_type
    if isinstance(value, bytes):
        item["blob"] = base64.b64encode(value).decode()
    elif isinstance(value, str):
        item["text"] = value
    else:
        raise TypeError(f"resource {uri} read returned {type(value).__name__}")
    return [item]


async def complete(
    completer: Completer | None, value: str, context: Mapping[str, str]
) -> dict[str, Any]:
    """A ``completion/complete`` result for one argument."""
    if completer is None:
        values: list[str] = []
    elif callable(completer):
        values = list(await completer(value, context))
    else:
        values = [item for item in completer if item.startswith(value)]
    return {
        "completion": {
            "values": values[:_MAX_COMPLETIONS],
            "total": len(values),
            "hasMore": len(values) > _MAX_COMPLETIONS,
        }
    }


class Registry:
    """The JSON-RPC methods, tools, resources, resource templates and prompts a fake MCP server
    answers, by name; list results come ``page_size`` at a time.

    Build one of your own with the same decorators as the server's and hand it to any number of
    servers (``FakeMCPServer(include=[registry])`` or ``server.include(registry)``): a fixture
    or a server factory then gives every fake your tools.
    """

    def __init__(self, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        self.methods: dict[str, MethodHandler] = {}
        self.tools: dict[str, Tool] = {}
        self.resources: dict[str, Resource] = {}
        self.templates: dict[str, ResourceTemplate] = {}
        self.prompts: dict[str, Prompt] = {}
        self.page_size = page_size

    def method(self, name: str) -> Callable[[MethodHandler], MethodHandler]:
        """Decorator: answer JSON-RPC method ``name`` with the decorated handler."""

        def register(handler: MethodHandler) -> MethodHandler:
            self.methods[name] = handler
            return handler

        return register

    def tool(
        self,
        name: str,
        description: str = "",
        input_schema: Mapping[str, Any] = _OBJECT,
        *,
        title: str | None = None,
        annotations: Mapping[str, Any] | None = None,
        output_schema: Mapping[str, Any] | None = None,
    ) -> Callable[[ToolHandler], ToolHandler]:
        """Decorator: serve the decorated handler as tool ``name``."""

        def register(handler: ToolHandler) -> ToolHandler:
            self.tools[name] = Tool(
                name, description, input_schema, handler, title, annotations, output_schema
            )
            return handler

        return register

    def resource(
        self,
        uri: str,
        name: str,
        *,
        description: str = "",
        mime_type: str | None = None,
        title: str | None = None,
    ) -> Callable[[ResourceHandler], ResourceHandler]:
        """Decorator: serve the decorated handler as the resource at ``uri``."""

        def register(handler: ResourceHandler) -> ResourceHandler:
            self.resources[uri] = Resource(uri, name, handler, description, mime_type, title)
            return handler

        return register

    def resource_template(
        self,
        uri_template: str,
        name: str,
        *,
        description: str = "",
        mime_type: str | None = None,
        title: str | None = None,
        completions: Mapping[str, Completer] | None = None,
    ) -> Callable[[ResourceHandler], ResourceHandler]:
        """Decorator: serve the decorated handler for every URI matching ``uri_template``."""

        def register(handler: ResourceHandler) -> ResourceHandler:
            self.templates[uri_template] = ResourceTemplate(
                uri_template, name, handler, description, mime_type, title, completions or {}
            )
            return handler

        return register

    def prompt(
        self,
        name: str,
        description: str = "",
        arguments: Sequence[PromptArgument] = (),
        *,
        title: str | None = None,
        completions: Mapping[str, Completer] | None = None,
    ) -> Callable[[PromptHandler], PromptHandler]:
        """Decorator: serve the decorated handler as prompt ``name``."""

        def register(handler: PromptHandler) -> PromptHandler:
            self.prompts[name] = Prompt(
                name, description, handler, tuple(arguments), title, completions or {}
            )
            return handler

        return register

    def copy(self) -> Registry:
        registry = Registry(self.page_size)
        registry.include(self)
        return registry

    def include(self, other: Registry) -> None:
        """Add everything ``other`` registers (what it names replaces what this one had)."""
        self.methods.update(other.methods)
        self.tools.update(other.tools)
        self.resources.update(other.resources)
        self.templates.update(other.templates)
        self.prompts.update(other.prompts)

    def find_resource(self, uri: str) -> tuple[Resource | ResourceTemplate, dict[str, str]] | None:
        """The resource at ``uri``, or the first template it matches, with its variables."""
        if uri in self.resources:
            return self.resources[uri], {}
        for template in self.templates.values():
            variables = template.match(uri)
            if variables is not None:
                return template, variables
        return None

    async def dispatch(
        self,
        method: str,
        params: Mapping[str, Any],
        ctx: ToolContext,
        *,
        protocol_version: str,
        state: PeerState | None = None,
    ) -> dict[str, Any]:
        """Answer one JSON-RPC request; raise :class:`RpcError` for a JSON-RPC error."""
        handler = self.methods.get(method)
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")
        request = Request(method, params, ctx, protocol_version, self, state or PeerState())
        try:
            result = await handler(request)
        except InputRequired as needed:
            return needed.result()
        if request.modern:
            result.setdefault("resultType", "complete")
            result.setdefault("_meta", {}).setdefault(SERVER_INFO_META_KEY, SERVER_INFO)
        return result
