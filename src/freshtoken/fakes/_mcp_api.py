"""The public way to give a fake MCP server your own tools, resources and prompts."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from freshtoken.fakes._mcp_registry import (
    Completer,
    PromptArgument,
    PromptHandler,
    Registry,
    ResourceHandler,
    ToolHandler,
)

__all__ = ["Registration"]


class Registration:
    """Decorators registering handlers on the server's own registry (a copy of the built-ins).

    What they register is answered like a built-in: listed (paginated), validated, matched by
    fault plans (``Match(tool=...)``, ``Match(prompt=...)``, ``Match(resource=...)``). After
    changing a list while clients are connected, tell them with ``notify_list_changed``.
    """

    _registry: Registry

    def include(self, registry: Registry) -> None:
        """Serve everything ``registry`` registers as well (a :class:`Registry` built with the
        same decorators, shared by many servers)."""
        self._registry.include(registry)

    def tool(
        self,
        name: str,
        description: str = "",
        input_schema: Mapping[str, Any] | None = None,
        *,
        title: str | None = None,
        annotations: Mapping[str, Any] | None = None,
        output_schema: Mapping[str, Any] | None = None,
    ) -> Callable[[ToolHandler], ToolHandler]:
        """Decorator: serve ``async def handler(arguments, ctx)`` as tool ``name``.

        Arguments are checked against ``input_schema`` (JSON Schema 2020-12, default: any
        object) before the handler runs. The handler returns a ``tools/call`` result dict, a
        string (one text item) or a list of content items, or raises :class:`RpcError`; ``ctx``
        (a :class:`ToolContext`) sends progress and log messages and asks the client
        (``await ctx.request("sampling/createMessage", {...})``). Fault plans match it by name
        (``Match(tool=name)``) like a built-in.
        """
        return self._registry.tool(
            name,
            description,
            input_schema if input_schema is not None else {"type": "object"},
            title=title,
            annotations=annotations,
            output_schema=output_schema,
        )

    def resource(
        self,
        uri: str,
        name: str,
        *,
        description: str = "",
        mime_type: str | None = None,
        title: str | None = None,
    ) -> Callable[[ResourceHandler], ResourceHandler]:
        """Decorator: serve ``async def handler(uri, variables, ctx)`` as the resource at ``uri``;
        it returns text (``str``), bytes (a blob), a contents dict or a list of them."""
        return self._registry.resource(
            uri, name, description=description, mime_type=mime_type, title=title
        )

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
        """Decorator: serve every URI matching ``uri_template`` (``{var}`` is one path segment);
        the handler gets the matched variables. ``completions`` feed ``completion/complete``."""
        return self._registry.resource_template(
            uri_template,
            name,
            description=description,
            mime_type=mime_type,
            title=title,
            completions=completions,
        )

    def prompt(
        self,
        name: str,
        description: str = "",
        arguments: Sequence[PromptArgument] = (),
        *,
        title: str | None = None,
        completions: Mapping[str, Completer] | None = None,
    ) -> Callable[[PromptHandler], PromptHandler]:
        """Decorator: serve ``async def handler(arguments, ctx)`` as prompt ``name``; it returns
        a ``prompts/get`` result dict, a list of messages or a string (one user message)."""
        return self._registry.prompt(
            name, description, arguments, title=title, completions=completions
        )
