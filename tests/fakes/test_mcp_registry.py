"""The fake MCP server's method and tool registry: the socket-free JSON-RPC core."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from mcp_helpers import mcp_harness, message

from freshtoken import ManualClock
from freshtoken.fakes._mcp_builtins import BUILTINS, tool_names
from freshtoken.fakes._mcp_protocol import METHOD_NOT_FOUND, Request, RpcError, ToolContext


def context() -> ToolContext:
    async def notify(method: str, params: dict[str, Any]) -> None:
        raise AssertionError("no notification expected")

    return ToolContext(
        clock=ManualClock(),
        notify=notify,
        token_fingerprint=None,
        progress_token=None,
        request_id=1,
    )


async def test_a_copy_answers_what_is_added_to_it_and_the_built_ins_stay_as_they_were() -> None:
    registry = BUILTINS.copy()

    @registry.method("custom/hello")
    async def hello(request: Request) -> dict[str, Any]:
        return {"hello": request.params.get("name"), "tools": sorted(request.registry.tools)}

    @registry.tool("shout", "Upper-case the text.")
    async def shout(args: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        return {"content": [{"type": "text", "text": str(args.get("text")).upper()}]}

    answer = await registry.dispatch(
        "custom/hello", {"name": "x"}, context(), protocol_version="2025-11-25"
    )
    assert answer["hello"] == "x"
    assert "shout" in answer["tools"]
    called = await registry.dispatch(
        "tools/call",
        {"name": "shout", "arguments": {"text": "hi"}},
        context(),
        protocol_version="2026-07-28",
    )
    assert called == {"content": [{"type": "text", "text": "HI"}], "resultType": "complete"}
    assert "shout" not in tool_names()
    with pytest.raises(RpcError) as missing:
        await BUILTINS.dispatch("custom/hello", {}, context(), protocol_version="2025-11-25")
    assert missing.value.code == METHOD_NOT_FOUND


async def test_handshake_methods_belong_to_their_revisions() -> None:
    for method, version in [("initialize", "2026-07-28"), ("server/discover", "2025-11-25")]:
        with pytest.raises(RpcError) as caught:
            await BUILTINS.dispatch(method, {}, context(), protocol_version=version)
        assert caught.value.code == METHOD_NOT_FOUND


async def test_each_server_answers_from_its_own_copy() -> None:
    async with mcp_harness() as first, mcp_harness() as second:
        first.server._registry.tool("only-here", "A tool one server has.")(_empty_tool)
        await first.initialize()
        await second.initialize()
        assert message(await first.call("only-here"))["result"] == {"content": []}
        refused = message(await second.call("only-here"))
        assert refused["error"]["message"] == "unknown tool 'only-here'"


async def _empty_tool(args: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return {"content": []}
