"""Bad input never produces a traceback: each gets the status and JSON-RPC code the spec asks for."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp_helpers import mcp_harness, message, rpc

from freshtoken import ConfigError
from freshtoken.fakes import FakeMCPServer

SOCKETS = pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])


@SOCKETS
async def test_bad_input_statuses(tls: bool) -> None:
    async with mcp_harness(tls=tls, max_body=4096) as h:
        await h.initialize()
        url = h.server.url
        malformed = await h.client.post(url, content=b"{not json", headers=h.headers())
        assert malformed.status_code == 400
        assert message(malformed)["error"]["code"] == -32700
        unknown = await h.post(rpc("no/such/method", id=3))
        assert unknown.status_code == 200
        assert message(unknown)["error"]["code"] == -32601
        batch = await h.post([rpc("ping")])
        assert batch.status_code == 400
        assert message(batch)["error"]["code"] == -32600
        missing = await h.post(rpc("ping"), session=None)
        assert missing.status_code == 400
        unknown_session = await h.post(rpc("ping"), session="nope")
        assert unknown_session.status_code == 404
        wrong_accept = await h.post(rpc("ping"), accept="application/json")
        assert wrong_accept.status_code == 406
        get_wrong_accept = await h.client.get(url, headers=h.headers(accept="application/json"))
        assert get_wrong_accept.status_code == 406
        big = await h.post(rpc("tools/call", {"name": "echo", "arguments": {"text": "x" * 5000}}))
        assert big.status_code == 413
        bad_version = await h.post(rpc("ping"), headers={"MCP-Protocol-Version": "1999-01-01"})
        assert bad_version.status_code == 400
        foreign = await h.post(rpc("ping"), headers={"Origin": "http://evil.example.com"})
        assert foreign.status_code == 403
        loopback_origin = await h.post(rpc("ping"), headers={"Origin": "http://localhost:3000"})
        assert loopback_origin.status_code == 200
        rebinding = await h.post(rpc("ping"), headers={"Host": "evil.example.com"})
        assert rebinding.status_code == 403
        bad_params = await h.call("add", {"a": "x", "b": 1})
        assert message(bad_params)["error"]["code"] == -32602
        unknown_tool = await h.call("nope")
        assert message(unknown_tool)["error"]["code"] == -32602
        put = await h.client.put(url, headers=h.headers())
        assert put.status_code == 405
        bad_resume = await h.client.get(url, headers={**h.headers(), "Last-Event-ID": "zz"})
        assert bad_resume.status_code == 400
        for response in (malformed, batch, big, foreign, rebinding):
            assert "Traceback" not in response.text
        h.server.check()


async def test_allowed_origins_are_honoured() -> None:
    async with mcp_harness(allowed_origins=["https://app.example.com"]) as h:
        await h.initialize()
        ok = await h.post(rpc("ping"), headers={"Origin": "https://app.example.com"})
        assert ok.status_code == 200


async def test_notifications_and_responses_are_accepted_with_202() -> None:
    async with mcp_harness() as h:
        await h.initialize()
        note = await h.post(
            {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}
        )
        assert note.status_code == 202
        reply = await h.post({"jsonrpc": "2.0", "id": 99, "result": {}})
        assert reply.status_code == 202


def _raw_call(tool: str, arguments: str, id: int = 5) -> bytes:
    """A tools/call body with ``arguments`` spliced in as raw text (NaN and 1e400 are not
    something json.dumps writes)."""
    return (
        f'{{"jsonrpc":"2.0","id":{id},"method":"tools/call",'
        f'"params":{{"name":"{tool}","arguments":{arguments}}}}}'
    ).encode()


@pytest.mark.parametrize("mode", ["json", "sse"])
async def test_non_finite_and_out_of_range_numbers_get_clean_errors(mode: str) -> None:
    async with mcp_harness(response_mode=mode) as h:
        await h.initialize()
        # JSON has no NaN or Infinity: a body using them does not parse.
        for arguments in [
            '{"count": Infinity}',
            '{"count": NaN}',
            '{"pace": NaN}',
            '{"a": -Infinity, "b": 1}',
        ]:
            response = await h.client.post(
                h.server.url, content=_raw_call("stream", arguments), headers=h.headers()
            )
            assert response.status_code == 400, arguments
            assert message(response)["error"]["code"] == -32700
        # 1e400 is valid JSON for a number no double can hold; 1.5 is not a count.
        for tool, arguments in [
            ("stream", '{"count": 1e400}'),
            ("stream", '{"count": 1.5}'),
            ("stream", '{"count": -1}'),
            ("stream", '{"count": 10001}'),
            ("stream", '{"pace": 1e400}'),
            ("stream", '{"pace": -0.5}'),
            ("stream", '{"pace": "1"}'),
            ("add", '{"a": 1e400, "b": 1}'),
            ("add", '{"a": 1e308, "b": 1e308}'),
            ("add", '{"a": true, "b": 1}'),
        ]:
            response = await h.client.post(
                h.server.url, content=_raw_call(tool, arguments), headers=h.headers()
            )
            assert response.status_code == 200, arguments
            error = message(response)["error"]
            assert error["code"] == -32602, (arguments, error)
            assert "Traceback" not in error["message"]
        assert h.timeline.count(actor="mcp", kind="server.error") == 0
        h.server.check()


async def test_bad_paging_and_method_params_are_invalid_params() -> None:
    async with mcp_harness(page_size=2) as h:
        await h.initialize()
        for method, params in [
            ("tools/list", {"cursor": "not-a-cursor"}),
            ("tools/list", {"cursor": 5}),
            ("prompts/list", {"cursor": "bzk5OTk5"}),  # past the end
            ("resources/read", {"uri": 7}),
            ("prompts/get", {"name": "test_prompt_with_arguments", "arguments": {"arg1": "x"}}),
            ("prompts/get", {"name": "test_simple_prompt", "arguments": {"x": 1}}),
            (
                "completion/complete",
                {"ref": {"type": "ref/nothing"}, "argument": {"name": "a", "value": ""}},
            ),
            ("logging/setLevel", {"level": "loud"}),
            ("tools/call", {"name": "echo", "arguments": [1]}),
        ]:
            response = await h.post(rpc(method, params, id=11))
            assert response.status_code == 200, method
            assert message(response)["error"]["code"] == -32602, (method, params)
        missing = message(await h.post(rpc("resources/read", {"uri": "test://nope"})))
        assert missing["error"]["code"] == -32002
        assert missing["error"]["data"] == {"uri": "test://nope"}
        h.server.check()


async def test_a_body_is_read_whole_however_it_arrives() -> None:
    async with mcp_harness(max_body=1 << 20) as h:
        await h.initialize()
        text = "x" * 300_000
        body = json.dumps(rpc("tools/call", {"name": "echo", "arguments": {"text": text}}, id=3))
        big = await h.client.post(h.server.url, content=body.encode(), headers=h.headers())
        assert message(big)["result"]["content"][0]["text"] == text

        async def two_writes() -> AsyncIterator[bytes]:
            small = json.dumps(rpc("tools/call", {"name": "echo", "arguments": {"text": "hi"}}))
            yield small[:20].encode()
            # The input under test: the rest arrives later, in a second write.
            await asyncio.sleep(0.05)
            yield small[20:].encode()

        split = await h.client.post(h.server.url, content=two_writes(), headers=h.headers())
        assert message(split)["result"]["content"][0]["text"] == "hi"

        async def too_much() -> AsyncIterator[bytes]:
            for _ in range(20):
                yield b" " * 65536

        # No Content-Length (chunked): the limit is enforced while reading.
        over = await h.client.post(h.server.url, content=too_much(), headers=h.headers())
        assert over.status_code == 413
        statuses = [e.status for e in h.timeline.select(actor="mcp", kind="response")]
        assert statuses.count(413) == 1  # only the one refused
        h.server.check()


@pytest.mark.parametrize(
    ("kwargs", "line"),
    [
        ({"max_body": 0}, "max_body: must be a whole number >= 1, got 0"),
        ({"page_size": 1.5}, "page_size: must be a whole number >= 1, got 1.5"),
        ({"max_sessions": True}, "max_sessions: must be a whole number >= 1, got True"),
        ({"client_timeout": float("nan")}, "client_timeout: must be a finite number > 0, got nan"),
        ({"client_timeout": float("inf")}, "client_timeout: must be a finite number > 0, got inf"),
        ({"sse_retry_ms": -1}, "sse_retry_ms: must be a whole number >= 1, got -1"),
    ],
)
def test_server_settings_are_checked(kwargs: dict[str, Any], line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        FakeMCPServer(**kwargs)
    assert str(caught.value) == line
