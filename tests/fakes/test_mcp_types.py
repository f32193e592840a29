"""Every answer, notification and server request the fake sends, validated against the ``mcp``
package's own per-revision wire models (``mcp_types.methods``), so the fake cannot drift from the
protocol it claims to speak.

The wire models ignore unknown keys, so each result is also round-tripped through its model:
anything the fake sends that the revision does not define (a misspelt field, a 2026-only key in
2025) is lost on the way and fails the comparison.
"""

from __future__ import annotations

from typing import Any

import mcp_types
import pytest
from mcp_helpers import MCPHarness, mcp_harness, rpc, sse_events
from mcp_types import jsonrpc
from mcp_types.methods import (
    parse_server_notification,
    parse_server_request,
    parse_server_result,
    serialize_server_result,
)

from freshtoken import SystemClock
from freshtoken.fakes._mcp_builtins import BUILTINS

MODERN = "2026-07-28"
ASKING = {"test_sampling", "test_elicitation", "list_roots"} | {
    name for name in BUILTINS.tools if name.startswith("test_elicitation_")
}
ANSWERS: dict[str, dict[str, Any]] = {
    "sampling/createMessage": {
        "role": "assistant",
        "content": {"type": "text", "text": "an answer"},
        "model": "test-model",
    },
    "elicitation/create": {"action": "accept", "content": {"username": "u", "email": "e@x"}},
    "roots/list": {"roots": [{"uri": "file:///tmp", "name": "tmp"}]},
}
ARGUMENTS: dict[str, dict[str, Any]] = {
    "echo": {"text": "hi"},
    "add": {"a": 1, "b": 2.5},
    "stream": {"count": 2, "pace": 0},
    "test_sampling": {"prompt": "p"},
    "test_elicitation": {"message": "m"},
    "json_schema_2020_12_tool": {"name": "n", "address": {"city": "c"}},
}
PROMPT_ARGUMENTS: dict[str, dict[str, str]] = {
    "test_prompt_with_arguments": {"arg1": "a", "arg2": "b"},
    "test_prompt_with_embedded_resource": {"resourceUri": "test://r"},
}
CAPABILITIES = {"sampling": {}, "elicitation": {}, "roots": {"listChanged": True}}


def _kept(sent: Any, dumped: Any, path: str = "result") -> None:
    """Everything sent survived the model (defaults it adds are fine; unknown keys are not)."""
    if isinstance(sent, dict):
        assert isinstance(dumped, dict), path
        for key, value in sent.items():
            assert key in dumped, f"{path}.{key} is not in the revision's schema"
            _kept(value, dumped[key], f"{path}.{key}")
    elif isinstance(sent, list):
        assert isinstance(dumped, list), path
        assert len(dumped) == len(sent), path
        for index, (item, kept) in enumerate(zip(sent, dumped, strict=True)):
            _kept(item, kept, f"{path}[{index}]")
    else:
        assert sent == dumped, path


class Checked:
    """Sends requests, answers the server's questions, and validates every message it gets."""

    def __init__(self, h: MCPHarness, version: str) -> None:
        self.h = h
        self.version = version
        self.ids = iter(range(100, 10_000))
        self.seen: set[str] = set()

    @property
    def modern(self) -> bool:
        return self.version == MODERN

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        params = dict(params or {})
        headers: dict[str, str] = {}
        if self.modern:
            meta = dict(params.get("_meta", {}))
            meta["io.modelcontextprotocol/protocolVersion"] = MODERN
            meta["io.modelcontextprotocol/clientCapabilities"] = CAPABILITIES
            meta["io.modelcontextprotocol/logLevel"] = "debug"
            params["_meta"] = meta
            headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": method}
            name = params.get("name", params.get("uri"))
            if method in ("tools/call", "prompts/get", "resources/read") and name is not None:
                headers["Mcp-Name"] = name
        request_id = next(self.ids)
        session = None if method == "initialize" else self.h.session_id
        async with self.h.client.stream(
            "POST",
            self.h.server.url,
            json=rpc(method, params, id=request_id),
            headers={**self.h.headers(session=session), **headers},
        ) as response:
            assert response.status_code == 200, await response.aread()
            if method == "initialize":
                self.h.session_id = response.headers["Mcp-Session-Id"]
                self.h.extra["MCP-Protocol-Version"] = self.version
            if not response.headers["content-type"].startswith("text/event-stream"):
                reply = jsonrpc.JSONRPCResponse.model_validate_json(await response.aread())
                return self.result(method, reply.model_dump(by_alias=True)["result"])
            async for event in sse_events(response):
                message = event.message
                if message is None:
                    continue
                if "method" in message and "id" in message:
                    await self.answer(message)
                elif "method" in message:
                    parse_server_notification(message["method"], self.version, message["params"])
                    self.seen.add(message["method"])
                else:
                    assert message["id"] == request_id
                    assert "result" in message, message
                    return self.result(method, message["result"])
        raise AssertionError(f"no response to {method}")

    def result(self, method: str, result: dict[str, Any]) -> dict[str, Any]:
        _kept(result, serialize_server_result(method, self.version, result))
        parse_server_result(method, self.version, result)
        if self.modern and result.get("resultType") == "input_required":
            mcp_types.InputRequiredResult.model_validate(result)
        return result

    async def answer(self, message: dict[str, Any]) -> None:
        request = parse_server_request(message["method"], self.version, message.get("params"))
        self.seen.add(request.method)
        answer = {"jsonrpc": "2.0", "id": message["id"], "result": ANSWERS[message["method"]]}
        posted = await self.h.post(answer)
        assert posted.status_code == 202

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One call; on 2026-07-28 the input rounds too, answered the way a client would."""
        result = await self.request(method, params)
        while self.modern and result.get("resultType") == "input_required":
            asked = result["inputRequests"]
            self.seen.update(question["method"] for question in asked.values())
            answers = {key: ANSWERS[question["method"]] for key, question in asked.items()}
            result = await self.request(
                method,
                {**params, "inputResponses": answers, "requestState": result["requestState"]},
            )
        return result


@pytest.mark.parametrize("mode", ["sse", "json"])
@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25", MODERN])
async def test_every_answer_matches_the_sdk_wire_models(version: str, mode: str) -> None:
    async with mcp_harness(
        protocol_version=version, response_mode=mode, clock=SystemClock(), page_size=3
    ) as h:
        checked = Checked(h, version)
        if checked.modern:
            await checked.request("server/discover")
        else:
            await checked.request(
                "initialize",
                {
                    "protocolVersion": version,
                    "capabilities": CAPABILITIES,
                    "clientInfo": {"name": "t", "version": "1"},
                },
            )
            assert (
                await h.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
            ).status_code == 202
            await checked.request("logging/setLevel", {"level": "debug"})
            await checked.request("resources/subscribe", {"uri": "test://watched-resource"})
            await checked.request("resources/unsubscribe", {"uri": "test://watched-resource"})
        if not checked.modern:
            await checked.request("ping")
        for listing, key in [
            ("tools/list", "tools"),
            ("resources/list", "resources"),
            ("resources/templates/list", "resourceTemplates"),
            ("prompts/list", "prompts"),
        ]:
            cursor: str | None = None
            while True:
                page = await checked.request(listing, {"cursor": cursor} if cursor else {})
                assert len(page[key]) <= 3
                cursor = page.get("nextCursor")
                if cursor is None:
                    break
        for name in BUILTINS.tools:
            if name in ASKING and mode == "json" and not checked.modern:
                continue  # a JSON response cannot carry the question (see test_mcp_peer)
            if name == "test_reconnection" and mode == "sse" and not checked.modern:
                continue  # ends its response on purpose (see test_mcp_peer)
            result = await checked.call(
                "tools/call", {"name": name, "arguments": ARGUMENTS.get(name, {})}
            )
            assert result.get("isError", False) == (name == "test_error_handling"), result
        for uri in ["test://static-text", "test://static-binary", "test://template/7/data"]:
            await checked.call("resources/read", {"uri": uri})
        for prompt in BUILTINS.prompts:
            await checked.call(
                "prompts/get", {"name": prompt, "arguments": PROMPT_ARGUMENTS.get(prompt, {})}
            )
        await checked.request(
            "completion/complete",
            {
                "ref": {"type": "ref/resource", "uri": "test://template/{id}/data"},
                "argument": {"name": "id", "value": "4"},
            },
        )
        if mode == "sse":
            assert {"notifications/progress", "notifications/message"} <= checked.seen
        if mode == "sse" or checked.modern:
            assert {"sampling/createMessage", "elicitation/create", "roots/list"} <= checked.seen
        h.server.check()
