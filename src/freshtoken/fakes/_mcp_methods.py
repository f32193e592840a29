"""The JSON-RPC methods every fake MCP server answers: the lifecycle, tools, resources,
prompts, completion and logging, with ``cursor``/``nextCursor`` pagination on every list.

Revision differences are kept here: 2026-07-28 has no ``initialize``, no ``ping``, no
``logging/setLevel``
(a request asks for logs in its ``_meta``) and no ``resources/subscribe`` pair (a
``subscriptions/listen`` stream, answered by the transport, replaces them); its list and read
results carry caching directives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from freshtoken.fakes._mcp_protocol import (
    HANDSHAKE_VERSIONS,
    INVALID_PARAMS,
    LOG_LEVELS,
    METHOD_NOT_FOUND,
    MODERN_VERSIONS,
    RESOURCE_NOT_FOUND,
    SERVER_INFO,
    Request,
    RpcError,
    page,
)
from freshtoken.fakes._mcp_registry import Registry, complete

__all__ = ["HANDSHAKE_ONLY", "MODERN_ONLY", "register_methods", "server_capabilities"]

HANDSHAKE_ONLY: Final = frozenset(
    {"initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"}
)
"""Methods 2026-07-28 removed."""
MODERN_ONLY: Final = frozenset({"server/discover", "subscriptions/listen"})
"""Methods only 2026-07-28 has."""


def server_capabilities(registry: Registry, *, modern: bool = False) -> dict[str, Any]:
    """What ``initialize`` (or ``server/discover``) says this server can do."""
    capabilities: dict[str, Any] = {"completions": {}, "logging": {}}
    if registry.tools:
        capabilities["tools"] = {"listChanged": True}
    if registry.resources or registry.templates:
        capabilities["resources"] = {"subscribe": True, "listChanged": True}
    if registry.prompts:
        capabilities["prompts"] = {"listChanged": True}
    return capabilities


def _cacheable(request: Request, result: dict[str, Any]) -> dict[str, Any]:
    # 2026-07-28 lets clients cache lists and reads; the fake changes on cue, so nothing is
    # cacheable, and nothing is shared between users.
    if request.modern:
        result.update(ttlMs=0, cacheScope="private")
    return result


def _listing(request: Request, key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    chunk, following = page(items, request.params, request.registry.page_size)
    result: dict[str, Any] = {key: chunk}
    if following is not None:
        result["nextCursor"] = following
    return _cacheable(request, result)


def _handshake_only(request: Request) -> None:
    if request.modern:
        raise RpcError(METHOD_NOT_FOUND, f"Method not found: {request.method}")


def _string(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str):
        raise RpcError(INVALID_PARAMS, f"'{name}' must be a string")
    return value


def _object(params: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = params.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RpcError(INVALID_PARAMS, f"'{name}' must be an object")
    return value


def register_methods(registry: Registry) -> None:
    """Register the protocol's methods on ``registry``."""

    @registry.method("initialize")
    async def initialize(request: Request) -> dict[str, Any]:
        _handshake_only(request)
        requested = request.params.get("protocolVersion")
        version = request.protocol_version
        supported = HANDSHAKE_VERSIONS[: HANDSHAKE_VERSIONS.index(version) + 1]
        request.state.client_capabilities = dict(_object(request.params, "capabilities"))
        request.state.client_info = dict(_object(request.params, "clientInfo"))
        return {
            "protocolVersion": requested if requested in supported else version,
            "capabilities": server_capabilities(request.registry),
            "serverInfo": SERVER_INFO,
        }

    @registry.method("server/discover")
    async def discover(request: Request) -> dict[str, Any]:
        if not request.modern:
            raise RpcError(METHOD_NOT_FOUND, "Method not found: server/discover")
        return _cacheable(
            request,
            {
                "supportedVersions": list(MODERN_VERSIONS),
                "capabilities": server_capabilities(request.registry, modern=True),
            },
        )

    @registry.method("ping")
    async def ping(request: Request) -> dict[str, Any]:
        _handshake_only(request)
        return {}

    @registry.method("tools/list")
    async def tools_list(request: Request) -> dict[str, Any]:
        tools = [tool.listing() for tool in request.registry.tools.values()]
        return _listing(request, "tools", tools)

    @registry.method("tools/call")
    async def tools_call(request: Request) -> dict[str, Any]:
        args = _object(request.params, "arguments")
        name = request.params.get("name")
        tool = request.registry.tools.get(name) if isinstance(name, str) else None
        if tool is None:
            raise RpcError(INVALID_PARAMS, f"unknown tool {name!r}")
        return await tool.call(args, request.ctx)

    @registry.method("resources/list")
    async def resources_list(request: Request) -> dict[str, Any]:
        resources = [resource.listing() for resource in request.registry.resources.values()]
        return _listing(request, "resources", resources)

    @registry.method("resources/templates/list")
    async def templates_list(request: Request) -> dict[str, Any]:
        templates = [template.listing() for template in request.registry.templates.values()]
        return _listing(request, "resourceTemplates", templates)

    @registry.method("resources/read")
    async def resources_read(request: Request) -> dict[str, Any]:
        uri = _string(request.params, "uri")
        found = request.registry.find_resource(uri)
        if found is None:
            raise RpcError(RESOURCE_NOT_FOUND, f"Resource not found: {uri}", {"uri": uri})
        resource, variables = found
        return _cacheable(request, await resource.read(uri, variables, request.ctx))

    @registry.method("resources/subscribe")
    async def subscribe(request: Request) -> dict[str, Any]:
        _handshake_only(request)
        request.state.subscriptions.add(_string(request.params, "uri"))
        return {}

    @registry.method("resources/unsubscribe")
    async def unsubscribe(request: Request) -> dict[str, Any]:
        _handshake_only(request)
        request.state.subscriptions.discard(_string(request.params, "uri"))
        return {}

    @registry.method("prompts/list")
    async def prompts_list(request: Request) -> dict[str, Any]:
        prompts = [prompt.listing() for prompt in request.registry.prompts.values()]
        return _listing(request, "prompts", prompts)

    @registry.method("prompts/get")
    async def prompts_get(request: Request) -> dict[str, Any]:
        name = _string(request.params, "name")
        prompt = request.registry.prompts.get(name)
        if prompt is None:
            raise RpcError(INVALID_PARAMS, f"unknown prompt {name!r}")
        return await prompt.get(_object(request.params, "arguments"), request.ctx)

    @registry.method("completion/complete")
    async def completion(request: Request) -> dict[str, Any]:
        ref = _object(request.params, "ref")
        argument = _object(request.params, "argument")
        name, value = _string(argument, "name"), _string(argument, "value")
        context = _object(_object(request.params, "context"), "arguments")
        if ref.get("type") == "ref/prompt":
            prompt = request.registry.prompts.get(_string(ref, "name"))
            if prompt is None:
                raise RpcError(INVALID_PARAMS, f"unknown prompt {ref.get('name')!r}")
            completers = prompt.completions
        elif ref.get("type") == "ref/resource":
            template = request.registry.templates.get(_string(ref, "uri"))
            completers = template.completions if template is not None else {}
        else:
            raise RpcError(INVALID_PARAMS, "ref.type must be ref/prompt or ref/resource")
        return await complete(completers.get(name), value, context)

    @registry.method("logging/setLevel")
    async def set_level(request: Request) -> dict[str, Any]:
        _handshake_only(request)
        level = request.params.get("level")
        if level not in LOG_LEVELS:
            raise RpcError(INVALID_PARAMS, f"level must be one of {', '.join(LOG_LEVELS)}")
        request.state.log_level = level
        return {}
