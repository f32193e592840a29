"""The fake MCP server's method and tool registry: the socket-free JSON-RPC core."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx2
import mcp.types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_helpers import mcp_harness, message, rpc

from freshtoken import ConfigError, ManualClock, SystemClock
from freshtoken.fakes import (
    AuthFailed200,
    FakeMCPServer,
    Fault,
    Match,
    PromptArgument,
    Registry,
    Status5xx,
    Status401,
)
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
    assert called["content"] == [{"type": "text", "text": "HI"}]
    assert called["resultType"] == "complete"
    assert called["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "freshtoken-fake-mcp"
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


async def test_your_own_tools_resources_and_prompts_are_served_and_faulted_like_built_ins() -> None:
    async with mcp_harness(page_size=2) as h:
        server = h.server

        @server.tool(
            "shout",
            "Upper-case the text.",
            {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        )
        async def shout(args: Mapping[str, Any], ctx: ToolContext) -> Any:
            await ctx.progress(1, 1)
            return str(args["text"]).upper()

        @server.resource("app://config", "config", mime_type="application/json")
        async def config(uri: str, variables: Mapping[str, str], ctx: ToolContext) -> Any:
            return '{"debug": true}'

        @server.resource_template(
            "app://users/{user}/avatar",
            "avatar",
            mime_type="image/png",
            completions={"user": complete_user},
        )
        async def avatar(uri: str, variables: Mapping[str, str], ctx: ToolContext) -> Any:
            return variables["user"].encode()

        @server.prompt("greet", "Greet someone.", [PromptArgument("name", required=True)])
        async def greet(args: Mapping[str, str], ctx: ToolContext) -> Any:
            return f"Hello {args['name']}"

        await h.initialize()
        assert (
            message(await h.call("shout", {"text": "hi"}))["result"]["content"][0]["text"] == "HI"
        )
        refused = message(await h.call("shout", {"text": 3}))
        assert refused["error"]["code"] == -32602
        assert "text: 3 is not of type 'string'" in refused["error"]["message"]
        read = message(await h.post(rpc("resources/read", {"uri": "app://users/ada/avatar"})))
        assert read["result"]["contents"] == [
            {"uri": "app://users/ada/avatar", "mimeType": "image/png", "blob": "YWRh"}
        ]
        got = message(
            await h.post(rpc("prompts/get", {"name": "greet", "arguments": {"name": "Ada"}}))
        )
        assert got["result"]["messages"][0]["content"]["text"] == "Hello Ada"
        completed = message(
            await h.post(
                rpc(
                    "completion/complete",
                    {
                        "ref": {"type": "ref/resource", "uri": "app://users/{user}/avatar"},
                        "argument": {"name": "user", "value": "a"},
                    },
                )
            )
        )
        assert completed["result"]["completion"] == {
            "values": ["ada", "alan"],
            "total": 2,
            "hasMore": False,
        }

        # Every list comes two at a time, and the pages add up to the whole registry.
        for method, key, names in [
            ("tools/list", "tools", set(h.server._registry.tools)),
            ("resources/list", "resources", set(h.server._registry.resources)),
            ("prompts/list", "prompts", set(h.server._registry.prompts)),
        ]:
            seen: list[str] = []
            params: dict[str, Any] = {}
            while True:
                page = message(await h.post(rpc(method, params)))["result"]
                assert len(page[key]) <= 2
                seen += [
                    item.get("name") if key != "resources" else item["uri"] for item in page[key]
                ]
                if "nextCursor" not in page:
                    break
                params = {"cursor": page["nextCursor"]}
            assert sorted(seen) == sorted(names)
            assert len(seen) > 2

        h.server.faults.add(Fault(Match(tool="shout"), Status401()))
        h.server.faults.add(Fault(Match(prompt="greet"), AuthFailed200()))
        h.server.faults.add(Fault(Match(resource="app://config"), Status5xx(status=502)))
        assert (await h.call("shout", {"text": "x"})).status_code == 401
        faulted = await h.post(rpc("prompts/get", {"name": "greet", "arguments": {"name": "x"}}))
        assert message(faulted)["error"]["data"]["error"] == "authentication_failed"
        assert (await h.post(rpc("resources/read", {"uri": "app://config"}))).status_code == 502
        assert [state.fired for state in h.server.faults.states] == [1, 1, 1]
        h.server.check()


async def complete_user(value: str, context: Mapping[str, str]) -> list[str]:
    return [name for name in ("ada", "alan", "grace") if name.startswith(value)]


def test_an_invalid_input_schema_is_refused_at_registration() -> None:
    server = FakeMCPServer()
    with pytest.raises(ConfigError) as caught:
        server.tool("broken", "", {"type": "nonsense"})(_empty_tool)
    assert str(caught.value).startswith("tool broken: input_schema: 'nonsense' is not valid")
    assert "broken" not in server._registry.tools


async def test_the_2026_input_rounds_reach_the_sdk_callbacks() -> None:
    """2026-07-28 has no server requests: the fake answers input_required and the official SDK
    client retries with its callbacks' answers."""
    async with mcp_harness(protocol_version="2026-07-28", clock=SystemClock()) as h:

        async def sampling(context: Any, params: types.CreateMessageRequestParams) -> Any:
            return types.CreateMessageResult(
                role="assistant", content=types.TextContent(type="text", text="sure"), model="m"
            )

        async def elicitation(context: Any, params: types.ElicitRequestParams) -> Any:
            return types.ElicitResult(action="decline")

        headers = {"Authorization": f"Bearer {h.access_token}"}
        async with httpx2.AsyncClient(headers=headers) as http:
            transport = streamable_http_client(h.server.url, http_client=http)
            async with Client(
                transport, sampling_callback=sampling, elicitation_callback=elicitation
            ) as client:
                sampled = await client.call_tool("test_sampling", {"prompt": "p"})
                elicited = await client.call_tool("test_elicitation", {"message": "m"})
        assert sampled.content[0].text == "LLM response: sure"  # type: ignore[union-attr]
        assert elicited.content[0].text.startswith("User response: action=decline")  # type: ignore[union-attr]
        calls = [e for e in h.timeline.select(actor="mcp", kind="request") if e.detail.get("tool")]
        assert [e.detail["tool"] for e in calls] == ["test_sampling"] * 2 + ["test_elicitation"] * 2


async def test_one_registry_of_your_own_serves_many_servers() -> None:
    extra = Registry()

    @extra.tool(
        "lookup", "Look a key up.", {"type": "object", "properties": {"key": {"type": "string"}}}
    )
    async def lookup(args: Mapping[str, Any], ctx: ToolContext) -> Any:
        return f"value of {args.get('key')}"

    @extra.prompt("hello", "Say hello.")
    async def hello(args: Mapping[str, str], ctx: ToolContext) -> Any:
        return "hello"

    async with mcp_harness(include=[extra]) as built, mcp_harness() as plain:
        plain.server.include(extra)
        for h in (built, plain):
            await h.initialize()
            answer = message(await h.call("lookup", {"key": "k"}))
            assert answer["result"]["content"][0]["text"] == "value of k"
            got = message(await h.post(rpc("prompts/get", {"name": "hello"})))
            assert got["result"]["messages"][0]["content"]["text"] == "hello"
            # The built-ins are still there.
            assert (
                message(await h.call("echo", {"text": "x"}))["result"]["content"][0]["text"] == "x"
            )
    assert "lookup" not in BUILTINS.tools
