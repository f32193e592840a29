"""The official MCP Python SDK client against the fake, with a token from the fake AS."""

from __future__ import annotations

import asyncio
import base64
import json
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
import mcp.types as types
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_helpers import mcp_harness

from freshtoken import SystemClock, Timeline, fingerprint
from freshtoken.fakes import FakeAuthorizationServer, FakeMCPServer, Fault, Match, Rotate
from freshtoken.fakes._mcp_tools import PNG_BASE64
from freshtoken.proxy import Proxy, RefreshTokenSource


@pytest.mark.parametrize("response_mode", ["json", "sse"])
@pytest.mark.parametrize("protocol_version", ["2025-11-25", "2026-07-28"])
async def test_sdk_client_initializes_lists_and_calls(
    protocol_version: str, response_mode: str
) -> None:
    async with mcp_harness(
        protocol_version=protocol_version, response_mode=response_mode, clock=SystemClock()
    ) as h:
        progress: list[float] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)

        headers = {"Authorization": f"Bearer {h.access_token}"}
        async with (
            httpx2.AsyncClient(headers=headers) as http,
            streamable_http_client(h.server.url, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            if protocol_version == "2026-07-28":
                await session.discover()
            else:
                await session.initialize()
            tools = await session.list_tools()
            assert {"echo", "stream", "whoami"} <= {t.name for t in tools.tools}
            echo = await session.call_tool("echo", {"text": "hello"})
            assert not echo.is_error
            assert _text(echo) == "hello"
            who = await session.call_tool("whoami", {})
            assert _text(who) == fingerprint(h.access_token)
            streamed = await session.call_tool(
                "stream", {"count": 3, "pace": 0}, progress_callback=on_progress
            )
            assert _text(streamed) == "streamed 3 events"
        if response_mode == "sse":
            assert progress == [1, 2, 3]
        else:
            # A JSON response cannot carry them: the fake says so on its timeline.
            assert progress == []
            assert h.timeline.count(actor="mcp", kind="notification.dropped") == 3
        kinds = {e.kind for e in h.timeline.select(actor="mcp")}
        assert "auth.rejected" not in kinds
        if protocol_version == "2026-07-28":
            assert "session.created" not in kinds


async def test_sdk_client_through_the_proxy_uses_the_whole_protocol_with_a_rotation_between_every_two_calls() -> (
    None
):
    """Default settings everywhere: the fake answers with SSE, the SDK client opens its GET
    stream, and every call after the first meets a token the AS has just invalidated."""
    timeline = Timeline()
    async with (
        FakeAuthorizationServer(timeline=timeline) as auth,
        FakeMCPServer(authorization_server=auth) as server,
        Proxy(timeline=timeline) as proxy,
    ):
        pair = auth.issue_tokens(resource=server.url)
        source = RefreshTokenSource(
            auth.token_endpoint,
            auth.client_id,
            auth.client_secret,
            refresh_token=pair.refresh_token,
            access_token=pair.access_token,
            resource=server.url,
        )
        url = proxy.register("fake", server.url, source)
        # The token also changes between the server's question and the client's answer.
        for method in ("sampling/createMessage", "elicitation/create", "roots/list"):
            server.faults.add(Fault(Match(response_to=method), Rotate()))
        sampled: list[str] = []
        elicited: list[str] = []
        logs: list[Any] = []
        progress: list[float] = []
        updated = asyncio.Event()

        async def sampling(context: Any, params: types.CreateMessageRequestParams) -> Any:
            sampled.append(params.messages[0].content.text)  # type: ignore[union-attr]
            return types.CreateMessageResult(
                role="assistant",
                content=types.TextContent(type="text", text="a haiku"),
                model="test-model",
            )

        async def elicitation(context: Any, params: types.ElicitRequestParams) -> Any:
            elicited.append(params.message)
            return types.ElicitResult(
                action="accept", content={"username": "ada", "email": "ada@example.com"}
            )

        async def roots(context: Any) -> Any:
            return types.ListRootsResult(roots=[types.Root(uri="file:///work", name="work")])  # type: ignore[arg-type]

        async def logging(params: types.LoggingMessageNotificationParams) -> None:
            logs.append((params.level, params.data))

        async def messages(message: Any) -> None:
            if isinstance(message, types.ResourceUpdatedNotification):
                updated.set()

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)

        async with (
            httpx2.AsyncClient() as http,
            streamable_http_client(url, http_client=http) as (read, write),
            ClientSession(
                read,
                write,
                sampling_callback=sampling,
                elicitation_callback=elicitation,
                list_roots_callback=roots,
                logging_callback=logging,
                message_handler=messages,
            ) as session,
        ):
            calls: list[Callable[[], Awaitable[Any]]] = []
            results: dict[str, Any] = {}

            def step(name: str, call: Callable[[], Awaitable[Any]]) -> None:
                async def run() -> None:
                    with warnings.catch_warnings():
                        # The SDK deprecates what 2026-07-28 removed (subscribe, setLevel);
                        # this session speaks 2025-11-25, where they are the protocol.
                        warnings.simplefilter("ignore", MCPDeprecationWarning)
                        results[name] = await call()

                calls.append(run)

            step("init", session.initialize)
            step("resources", session.list_resources)
            step("text", lambda: session.read_resource("test://static-text"))
            step("binary", lambda: session.read_resource("test://static-binary"))
            step("templates", session.list_resource_templates)
            step("templated", lambda: session.read_resource("test://template/42/data"))
            step("subscribe", lambda: session.subscribe_resource("test://watched-resource"))
            step("prompts", session.list_prompts)
            step(
                "prompt",
                lambda: session.get_prompt(
                    "test_prompt_with_arguments", {"arg1": "a", "arg2": "b"}
                ),
            )
            step(
                "embedded",
                lambda: session.get_prompt(
                    "test_prompt_with_embedded_resource", {"resourceUri": "test://x"}
                ),
            )
            step("image", lambda: session.get_prompt("test_prompt_with_image"))
            step(
                "complete",
                lambda: session.complete(
                    types.PromptReference(type="ref/prompt", name="test_prompt_with_arguments"),
                    {"name": "arg1", "value": "par"},
                ),
            )
            step("level", lambda: session.set_logging_level("info"))
            step("logging", lambda: session.call_tool("test_tool_with_logging", {}))
            step("sampling", lambda: session.call_tool("test_sampling", {"prompt": "a poem"}))
            step(
                "elicitation",
                lambda: session.call_tool("test_elicitation", {"message": "who are you?"}),
            )
            step("roots", lambda: session.call_tool("list_roots", {}))
            step(
                "progress",
                lambda: session.call_tool(
                    "test_tool_with_progress",
                    {},
                    progress_callback=on_progress,
                ),
            )
            step("unsubscribe", lambda: session.unsubscribe_resource("test://watched-resource"))
            for number, call in enumerate(calls):
                if number:
                    auth.rotate()
                await asyncio.wait_for(call(), 10)
                if number == 6:  # subscribed: an update reaches the client on its GET stream
                    await timeline.wait_for(
                        lambda e: e.kind == "response" and e.detail.get("http_method") == "GET"
                    )
                    server.notify_resource_updated("test://watched-resource")
                    await asyncio.wait_for(updated.wait(), 5)

        assert [r.name for r in results["resources"].resources] == [
            "static-text",
            "static-binary",
            "watched-resource",
        ]
        text = results["text"].contents[0]
        assert text.text == "This is the content of the static text resource."
        assert results["binary"].contents[0].blob == PNG_BASE64
        assert base64.b64decode(results["binary"].contents[0].blob).startswith(b"\x89PNG")
        assert (
            results["templates"].resource_templates[0].uri_template == "test://template/{id}/data"
        )
        assert json.loads(results["templated"].contents[0].text)["id"] == "42"
        assert [p.name for p in results["prompts"].prompts][:2] == [
            "test_simple_prompt",
            "test_prompt_with_arguments",
        ]
        assert (
            results["prompt"].messages[0].content.text
            == "Prompt with arguments: arg1='a', arg2='b'"
        )
        assert results["embedded"].messages[0].content.resource.uri == "test://x"
        assert results["image"].messages[0].content.mime_type == "image/png"
        assert results["complete"].completion.values == ["paris", "park", "party"]
        assert logs == [
            ("info", "Tool execution started"),
            ("info", "Tool processing data"),
            ("info", "Tool execution completed"),
        ]
        assert sampled == ["a poem"]
        assert _text(results["sampling"]) == "LLM response: a haiku"
        assert elicited == ["who are you?"]
        assert "ada@example.com" in _text(results["elicitation"])
        assert json.loads(_text(results["roots"])) == [{"uri": "file:///work", "name": "work"}]
        assert progress == [0, 50, 100]
        assert all(not getattr(r, "is_error", False) for r in results.values())

        rotations = len(calls) - 1 + 3  # between every two calls, and before each answer
        refreshes = auth.token_requests_seen("refresh_token")
        assert len(refreshes) == rotations
        assert all(seen.status == 200 for seen in refreshes)
        answers = [
            e
            for e in timeline.select(actor="mcp", kind="request")
            if e.detail.get("answers") is not None
        ]
        # Each answer was refused once with the rotated token, then replayed by the proxy.
        assert sorted(e.detail["answers"] for e in answers) == sorted(
            ["sampling/createMessage", "elicitation/create", "roots/list"] * 2
        )
        assert timeline.count(actor="mcp", kind="client.response") == 3
        assert timeline.count(actor="mcp", kind="notification.dropped") == 0
        auth.check()
        server.check()


def _text(result: Any) -> str:
    text: str = result.content[0].text
    return text
