"""Every auth failure style, every terminal fault, over real sockets, plain and TLS."""

from __future__ import annotations

import pytest
from mcp_helpers import mcp_harness, message, rpc, sse_events

from freshtoken.fakes import (
    ACTION_TYPES,
    Action,
    AuthFailed200,
    Fault,
    Match,
    Status5xx,
    Status400,
    Status401,
    Status403Scope,
)

SOCKETS = pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])


@SOCKETS
async def test_401_carries_rfc6750_and_rfc9728_challenge(tls: bool) -> None:
    async with mcp_harness(tls=tls) as h:
        await h.initialize()
        h.core.rotate()  # type: ignore[union-attr]
        response = await h.call("echo", {"text": "x"})
        assert response.status_code == 401
        challenge = response.headers["WWW-Authenticate"]
        assert 'error="invalid_token"' in challenge
        assert f'resource_metadata="{h.server.resource_metadata_url}"' in challenge
        missing = await h.call("echo", {"text": "x"}, token=None)
        assert missing.status_code == 401
        assert "error=" not in missing.headers["WWW-Authenticate"]
        rejected = h.timeline.select(actor="mcp", kind="auth.rejected")
        assert [e.status for e in rejected] == [401, 401]
        assert rejected[0].detail["style"] == "401"
        metadata = await h.client.get(h.server.resource_metadata_url)
        assert message(metadata)["authorization_servers"] == [h.authorization_server.url]  # type: ignore[union-attr]
        assert message(metadata)["resource"] == h.server.url


@SOCKETS
@pytest.mark.parametrize(
    ("style", "status"),
    [
        ("200-jsonrpc", 200),
        ("200-posthog", 200),
        ("200-tool-error", 200),
        ("403-scope", 403),
        ("400", 400),
        ("500", 500),
    ],
)
async def test_auth_failure_styles(tls: bool, style: str, status: int) -> None:
    async with mcp_harness(tls=tls, auth_failure_style=style) as h:
        await h.initialize()
        h.core.expire(h.access_token)  # type: ignore[union-attr,arg-type]
        response = await h.call("echo", {"text": "x"}, id=7)
        assert response.status_code == status
        body = message(response)
        if style == "200-jsonrpc":
            assert body["id"] == 7
            assert "authentication_failed" in body["error"]["message"]
            assert body["error"]["data"]["error"] == "authentication_failed"
        elif style == "200-posthog":
            assert body["error"]["code"] == "authentication_failed"
            assert "jsonrpc" not in body
        elif style == "200-tool-error":
            assert body["result"]["isError"] is True
            assert "Authentication failed" in body["result"]["content"][0]["text"]
        elif style == "403-scope":
            assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
            assert 'scope="mcp"' in response.headers["WWW-Authenticate"]
        elif style == "400":
            assert body["error"]["code"] == -32600
        else:
            assert body["error"]["code"] == -32603
        event = h.timeline.select(actor="mcp", kind="auth.rejected")[-1]
        assert event.detail["style"] == style
        assert event.status == status


async def test_auth_failure_in_first_sse_event() -> None:
    async with mcp_harness(auth_failure_style="200-jsonrpc", response_mode="sse") as h:
        await h.initialize()
        h.core.rotate()  # type: ignore[union-attr]
        async with h.client.stream(
            "POST",
            h.server.url,
            json=rpc("tools/call", {"name": "echo", "arguments": {"text": "x"}}, id=3),
            headers=h.headers(),
        ) as response:
            assert response.status_code == 200
            messages = [e.message async for e in sse_events(response) if e.data]
        assert messages == [messages[0]]
        assert messages[0]["id"] == 3
        assert "authentication_failed" in messages[0]["error"]["message"]


async def test_tool_error_style_falls_back_to_jsonrpc_for_non_tool_methods() -> None:
    async with mcp_harness(auth_failure_style="200-tool-error") as h:
        await h.initialize()
        h.core.rotate()  # type: ignore[union-attr]
        body = message(await h.post(rpc("tools/list", id=4)))
        assert body["error"]["data"]["error"] == "authentication_failed"


async def test_required_scope_missing_is_403_insufficient_scope() -> None:
    async with mcp_harness(scope="read", required_scopes=["write"]) as h:
        response = await h.post(
            rpc(
                "initialize",
                {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"},
                },
            ),
            session=None,
        )
        assert response.status_code == 403
        assert 'scope="write"' in response.headers["WWW-Authenticate"]


@SOCKETS
async def test_introspection_validation_over_http(tls: bool) -> None:
    async with mcp_harness(tls=tls, validation="introspection") as h:
        await h.initialize()
        assert (await h.call("echo", {"text": "ok"})).status_code == 200
        h.core.rotate()  # type: ignore[union-attr]
        assert (await h.call("echo", {"text": "no"})).status_code == 401
        introspected = h.timeline.select(actor="as", kind="token.introspected")
        assert [e.detail["active"] for e in introspected][-2:] == [True, False]


async def test_auth_off_accepts_anonymous_and_whoami_says_so() -> None:
    async with mcp_harness(auth=False) as h:
        await h.initialize()
        who = await h.call("whoami")
        assert message(who)["result"]["content"][0]["text"] == "anonymous"


@SOCKETS
@pytest.mark.parametrize(
    ("action", "status"),
    [
        (Status401(), 401),
        (AuthFailed200(shape="posthog"), 200),
        (Status403Scope(scope="admin"), 403),
        (Status400(), 400),
        (Status5xx(status=502), 502),
    ],
)
async def test_terminal_faults_answer_once_then_recover(
    tls: bool, action: Action, status: int
) -> None:
    async with mcp_harness(tls=tls) as h:
        await h.initialize()
        fault = h.server.faults.add(Fault(Match(tool="echo"), action))
        first = await h.call("echo", {"text": "a"})
        second = await h.call("echo", {"text": "b"})
        assert first.status_code == status
        assert second.status_code == 200
        assert message(second)["result"]["content"][0]["text"] == "b"
        assert fault.fired == 1
        fired = h.timeline.select(actor="mcp", kind="fault")
        assert [e.detail["action"] for e in fired] == [action.kind]


async def test_side_effect_faults_rotate_expire_revoke() -> None:
    for kind in ("rotate", "expire", "revoke"):
        async with mcp_harness() as h:
            await h.initialize()
            h.server.faults.add(
                Fault(Match(rpc_method="tools/call", request_count=2), ACTION_TYPES[kind]())
            )
            assert (await h.call("echo", {"text": "1"})).status_code == 200
            assert (await h.call("echo", {"text": "2"})).status_code == 401, kind
            assert h.core.validate_access_token(h.access_token) is None  # type: ignore[union-attr,arg-type]
