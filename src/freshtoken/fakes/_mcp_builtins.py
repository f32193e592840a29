"""The registry every fake MCP server starts from: the protocol's methods, the built-in tools,
resources and prompts."""

from __future__ import annotations

from typing import Final

from freshtoken.fakes._mcp_library import register_library
from freshtoken.fakes._mcp_methods import register_methods
from freshtoken.fakes._mcp_registry import Registry
from freshtoken.fakes._mcp_tools import register_tools

__all__ = ["BUILTINS", "tool_names"]

BUILTINS: Final = Registry()
"""The methods, tools, resources and prompts every fake MCP server starts with (each server
answers from its own copy)."""
register_methods(BUILTINS)
register_tools(BUILTINS)
register_library(BUILTINS)


def tool_names() -> list[str]:
    """Names of the built-in tools."""
    return list(BUILTINS.tools)
