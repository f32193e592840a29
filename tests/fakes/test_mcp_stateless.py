"""Protocol revision 2026-07-28: no sessions, per-request envelope, routing headers checked."""

from __future__ import annotations

from typing import Any

from mcp_helpers import mcp_harness, message, rpc

VERSION = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": VERSION,
    "io.modelcontextprotocol/clientCapabilities": {},
}


def call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return rpc("tools/call", {"name": name, "arguments": args, "_meta": META})


def headers(method: str, name: str | None = None, version: str = VERSION) -> dict[str, str]:
    out = {"MCP-Protocol-Version": version, "Mcp-Method": method}
    if name is not None:
        out["Mcp-Name"] = name
    return out


async def test_stateless_requests_need_no_session() -> None:
    async with mcp_harness(protocol_version=VERSION) as h:
        discover = await h.post(
            rpc("server/discover", {"_meta": META}), headers=headers("server/discover")
        )
        assert message(discover)["result"]["supportedVersions"] == [VERSION]
        assert "Mcp-Session-Id" not in discover.headers
        echo = await h.post(call("echo", {"text": "hi"}), headers=headers("tools/call", "echo"))
        assert message(echo)["result"]["content"][0]["text"] == "hi"
        assert message(echo)["result"]["resultType"] == "complete"
        assert h.timeline.count(actor="mcp", kind="session.created") == 0


async def test_stateless_rejections() -> None:
    async with mcp_harness(protocol_version=VERSION) as h:
        mismatch = await h.post(call("echo", {"text": "x"}), headers=headers("tools/call", "add"))
        assert mismatch.status_code == 400
        assert message(mismatch)["error"]["code"] == -32020
        wrong_method = await h.post(call("echo", {"text": "x"}), headers=headers("tools/list"))
        assert message(wrong_method)["error"]["code"] == -32020
        no_meta = await h.post(rpc("tools/list", {}), headers=headers("tools/list"))
        assert no_meta.status_code == 400
        assert message(no_meta)["error"]["code"] == -32602
        old = dict(META, **{"io.modelcontextprotocol/protocolVersion": "2025-11-25"})
        unsupported = await h.post(
            rpc("tools/list", {"_meta": old}), headers=headers("tools/list", version="2025-11-25")
        )
        assert message(unsupported)["error"]["code"] == -32022
        assert message(unsupported)["error"]["data"]["supported"] == [VERSION]
        unknown = await h.post(rpc("initialize", {"_meta": META}), headers=headers("initialize"))
        assert unknown.status_code == 404
        assert message(unknown)["error"]["code"] == -32601
        get = await h.client.get(h.server.url, headers=h.headers(session=None))
        assert get.status_code == 405
        note = await h.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert note.status_code == 202
