"""Bad input never produces a traceback: each gets the status and JSON-RPC code the spec asks for."""

from __future__ import annotations

import pytest
from mcp_helpers import mcp_harness, message, rpc

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
