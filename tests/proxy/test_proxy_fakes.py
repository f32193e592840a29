"""The proxy against the real fake AS and fake MCP server, over real sockets (plain and TLS)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import RawMCPClient, sse_messages, text_of

from freshtoken import ManualClock, Timeline, fingerprint
from freshtoken.fakes import (
    ACTION_TYPES,
    CutStream,
    FakeAuthorizationServer,
    FakeCA,
    FakeMCPServer,
    Fault,
    Match,
    Status401,
    Status403Scope,
    TokenPolicy,
)
from freshtoken.proxy import (
    AuthFailureMatcher,
    Limits,
    Proxy,
    RefreshTokenSource,
    tool_error_matcher,
)


@dataclass
class Stack:
    auth: FakeAuthorizationServer
    mcp: FakeMCPServer
    proxy: Proxy
    source: RefreshTokenSource
    timeline: Timeline
    client: RawMCPClient
    url: str

    def since(self) -> int:
        return self.timeline.next_seq

    def count(self, kind: str, since: int, actor: str = "proxy") -> int:
        return self.timeline.count(actor=actor, kind=kind, since=since)


@asynccontextmanager
async def running_stack(
    *,
    tls: bool = False,
    clock: ManualClock | None = None,
    store: Path | None = None,
    peek_timeout: float = 10.0,
    version: str = "2025-11-25",
    matcher: AuthFailureMatcher | None = None,
    **mcp_options: Any,
) -> AsyncIterator[Stack]:
    timeline = Timeline(clock)
    ca = FakeCA() if tls else None
    server_ssl = ca.server_ssl_context() if ca else None
    try:
        async with (
            FakeAuthorizationServer(
                clock=clock, timeline=timeline, ssl_context=server_ssl, policy=TokenPolicy()
            ) as auth,
            FakeMCPServer(
                authorization_server=auth,
                clock=clock,
                timeline=timeline,
                ssl_context=server_ssl,
                protocol_version=version,
                **mcp_options,
            ) as mcp,
            Proxy(
                timeline=timeline,
                upstream_ssl=ca.client_ssl_context() if ca else None,
                limits=Limits(sse_peek_timeout=peek_timeout),
                matcher=matcher,
            ) as proxy,
            aiohttp.ClientSession() as http,
        ):
            pair = auth.issue_tokens(resource=mcp.url)
            source = RefreshTokenSource(
                auth.token_endpoint,
                auth.client_id,
                auth.client_secret,
                refresh_token=pair.refresh_token,
                resource=mcp.url,
                verify=ca.ca_path if ca else True,
                clock=clock,
                store=store,
            )
            url = proxy.register("fake", mcp.url, source)
            client = RawMCPClient(http, url, version)
            yield Stack(auth, mcp, proxy, source, timeline, client, url)
            auth.check()
            mcp.check()
    finally:
        if ca is not None:
            ca.close()


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_persistent_401_gives_exactly_two_sends_and_one_refresh(tls: bool) -> None:
    async with running_stack(tls=tls) as s:
        await s.client.initialize()
        s.mcp.faults.add(Fault(Match(tool="echo"), Status401(), times=2))
        mark = s.since()
        status, _ = await s.client.call("echo", {"text": "hi"})
        assert status == 401
        assert s.count("upstream.send", mark) == 2
        assert s.count("refresh.start", mark) == 1
        assert s.count("refresh.done", mark) == 1
        assert s.count("replay", mark) == 1
        sends = s.timeline.select(actor="proxy", kind="upstream.send", since=mark)
        assert sends[0].token != sends[1].token
        # The session keeps working once the fault is spent.
        status, reply = await s.client.call("echo", {"text": "again"})
        assert status == 200
        assert text_of(reply) == "again"


@pytest.mark.parametrize(
    ("style", "mode", "reason"),
    [
        ("401", "json", "401"),
        ("200-jsonrpc", "json", "json"),
        ("200-posthog", "json", "json"),
        ("200-tool-error", "json", "json"),
        ("200-jsonrpc", "sse", "sse"),
        ("200-tool-error", "sse", "sse"),
    ],
)
async def test_rotation_is_healed_by_one_refresh_and_one_replay(
    style: str, mode: str, reason: str
) -> None:
    # An upstream that reports a refused bearer as a tool error is configured as such.
    matcher = tool_error_matcher if style == "200-tool-error" else None
    async with running_stack(auth_failure_style=style, response_mode=mode, matcher=matcher) as s:
        await s.client.initialize()
        status, reply = await s.client.call("whoami")
        first = text_of(reply)
        s.auth.rotate()
        mark = s.since()
        status, reply = await s.client.call("whoami")
        assert status == 200
        assert text_of(reply) != first
        assert text_of(reply) == fingerprint(s.source.current)
        [failure] = s.timeline.select(actor="proxy", kind="auth.failure", since=mark)
        assert failure.detail["reason"] == reason
        assert s.count("refresh.done", mark) == 1
        assert s.count("upstream.send", mark) == 2


async def test_200_concurrent_requests_on_one_rotation_cause_one_token_request() -> None:
    async with running_stack() as s:
        await s.client.initialize()
        await s.client.call("echo", {"text": "warm"})
        s.auth.rotate()
        before = s.auth.token_requests
        results = await asyncio.gather(
            *(s.client.call("echo", {"text": f"n{i}"}) for i in range(200))
        )
        assert [status for status, _ in results] == [200] * 200
        assert sorted(text_of(reply) for _, reply in results) == sorted(f"n{i}" for i in range(200))
        assert s.auth.token_requests == before + 1


async def test_403_insufficient_scope_passes_through_without_refresh() -> None:
    async with running_stack() as s:
        await s.client.initialize()
        s.mcp.faults.add(Fault(Match(tool="echo"), Status403Scope(scope="admin")))
        mark = s.since()
        before = s.auth.token_requests
        resp = await s.client.http.post(
            s.url,
            json={
                "jsonrpc": "2.0",
                "id": 9,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "x"}},
            },
            headers=s.client.headers(),
        )
        assert resp.status == 403
        assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]
        assert s.count("refresh.start", mark) == 0
        assert s.count("upstream.send", mark) == 1
        assert s.auth.token_requests == before


@pytest.mark.parametrize("style", ["400", "500"])
async def test_other_statuses_pass_through_untouched(style: str) -> None:
    async with running_stack(auth_failure_style=style) as s:
        await s.client.initialize()
        s.auth.rotate()
        mark = s.since()
        status, reply = await s.client.call("echo", {"text": "x"})
        assert status == int(style)
        assert "error" in reply
        assert s.count("refresh.start", mark) == 0
        assert s.count("upstream.send", mark) == 1


async def test_revoked_refresh_token_is_a_clear_terminal_error() -> None:
    async with running_stack() as s:
        await s.client.initialize()
        await s.client.call("echo", {"text": "x"})
        assert s.source.current is not None
        s.auth.revoke_family(s.source.current)
        before = s.auth.token_requests
        for _ in range(3):
            status, reply = await s.client.call("echo", {"text": "x"})
            assert status == 502
            message = reply["error"]["message"]
            assert "fake" in message
            assert "invalid_grant" in message
            assert reply["error"]["data"] == {"target": "fake", "reason": "InvalidGrantError"}
            assert isinstance(reply["id"], int)
        # One refused refresh, then no storm: the terminal error is answered from memory.
        assert s.auth.token_requests == before + 1


async def test_sse_auth_failure_in_first_event_is_replayed_and_healthy_streams_are_not_held() -> (
    None
):
    clock = ManualClock()
    async with running_stack(
        clock=clock, auth_failure_style="200-jsonrpc", response_mode="sse", peek_timeout=30.0
    ) as s:
        await s.client.initialize()
        s.auth.rotate()
        mark = s.since()
        status, reply = await s.client.call("echo", {"text": "after rotation"})
        assert status == 200
        assert text_of(reply) == "after rotation"
        [failure] = s.timeline.select(actor="proxy", kind="auth.failure", since=mark)
        assert failure.detail["reason"] == "sse"

        # Healthy stream: the first progress event reaches the client while the tool is still
        # sleeping (on the manual clock) before its second event. A proxy that held the stream
        # for more than the first event could not deliver it.
        mark = s.since()
        message = {
            "jsonrpc": "2.0",
            "id": 50,
            "method": "tools/call",
            "params": {"name": "stream", "arguments": {"count": 3, "pace": 10}},
        }
        response = asyncio.ensure_future(
            s.client.http.post(s.url, json=message, headers=s.client.headers())
        )
        await clock.wait_for_sleepers(1)
        clock.advance(10)
        resp = await asyncio.wait_for(response, 5)
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        seen = b""
        async with asyncio.timeout(5):
            while b"notifications/progress" not in seen:
                seen += await resp.content.readany()
        progress = [e for e in s.timeline.select(actor="mcp", since=mark) if e.kind == "sse.event"]
        assert len([m for m in sse_messages(seen + b"\n\n") if "method" in m]) == 1
        assert progress, "the server has sent its first event"
        rest_task = asyncio.ensure_future(resp.content.read())
        # The two remaining events each wait for the clock; move it once per parked sleeper.
        for _ in range(2):
            await clock.wait_for_sleepers(1)
            clock.advance(10)
        rest = await asyncio.wait_for(rest_task, 5)
        messages = sse_messages(seen + rest)
        assert [m.get("method") for m in messages if "method" in m] == [
            "notifications/progress"
        ] * 3
        assert text_of(messages[-1]) == "streamed 3 events"
        assert s.count("auth.failure", mark) == 0


async def test_stateless_revision_client_disconnect_cancels_the_upstream_request() -> None:
    clock = ManualClock()
    async with running_stack(clock=clock, version="2026-07-28", response_mode="sse") as s:
        mark = s.since()
        message = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {
                "name": "stream",
                "arguments": {"count": 5, "pace": 10},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                },
            },
        }
        headers = {**s.client.headers(), "Mcp-Method": "tools/call", "Mcp-Name": "stream"}
        response = asyncio.ensure_future(s.client.http.post(s.url, json=message, headers=headers))
        await clock.wait_for_sleepers(1)
        clock.advance(10)
        resp = await asyncio.wait_for(response, 5)
        assert resp.status == 200, await resp.text()
        await asyncio.wait_for(resp.content.readuntil(b"progress"), 5)
        resp.close()
        await s.timeline.wait_for(
            lambda e: e.actor == "mcp" and e.kind == "stream.cancelled", timeout=5, since=mark
        )
        end = await s.timeline.wait_for(
            lambda e: e.actor == "proxy" and e.kind == "stream.end", timeout=5, since=mark
        )
        assert end.detail["reason"] == "client-gone"


async def test_upstream_cut_mid_stream_ends_the_client_response() -> None:
    async with running_stack(response_mode="sse") as s:
        await s.client.initialize()
        s.mcp.faults.add(Fault(Match(tool="stream", sse_event=1), CutStream(mode="reset")))
        mark = s.since()
        # The reset reaches the client as a cut body, never as a stream that ended cleanly.
        with pytest.raises(aiohttp.ClientPayloadError):
            await asyncio.wait_for(s.client.call("stream", {"count": 3}), 10)
        end = await s.timeline.wait_for(
            lambda e: e.actor == "proxy" and e.kind == "stream.end", timeout=5, since=mark
        )
        assert end.detail["reason"] == "upstream-error"


async def test_get_stream_resumes_with_last_event_id_on_a_fresh_token() -> None:
    async with running_stack() as s:
        await s.client.initialize()
        s.auth.rotate()
        mark = s.since()
        resp = await s.client.http.get(
            s.url,
            headers={**s.client.headers(), "Accept": "text/event-stream", "Last-Event-ID": "x"},
        )
        # The replay on the fresh token got past authentication: the server judged the event id.
        assert resp.status == 400
        assert "unknown Last-Event-ID" in (await resp.json())["error"]["message"]
        assert s.count("auth.failure", mark) == 1
        assert s.count("refresh.done", mark) == 1
        sends = s.timeline.select(actor="mcp", kind="request", since=mark)
        assert sends
        assert sends[-1].token == fingerprint(s.source.current)


async def test_a_whole_run_logs_no_raw_token(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    store = tmp_path / "tokens.json"
    secrets_seen: set[str] = set()
    async with running_stack(store=store, response_mode="sse") as s:
        secrets_seen.add(s.proxy.secret)
        await s.client.initialize()
        for style in ("status-401", "auth-failed-200"):
            s.mcp.faults.add(Fault(Match(tool="echo"), ACTION_TYPES[style]()))
            await s.client.call("echo", {"text": "x"})
            secrets_seen.add(s.source.current or "")
            secrets_seen.add(store.read_text())
        s.auth.rotate()
        await s.client.call("stream", {"count": 2})
        secrets_seen.add(s.source.current or "")
        await s.proxy.refresh("fake")
        secrets_seen.add(s.source.current or "")
        secrets_seen.add(json.loads(store.read_text())["refresh_token"])
        s.auth.revoke_family(s.source.current or "")
        await s.client.call("echo", {"text": "x"})
    tokens = {t for t in secrets_seen if t and not t.startswith("{")}
    refresh_tokens = {json.loads(t)["refresh_token"] for t in secrets_seen if t.startswith("{")}
    assert len(tokens) >= 4
    assert refresh_tokens
    assert caplog.records, "the run logged something at DEBUG"
    text = caplog.text + s.timeline.format()
    for secret in tokens | refresh_tokens:
        assert secret not in text


async def test_posts_are_not_blocked_by_an_open_get_stream_during_refresh() -> None:
    async with running_stack() as s:
        await s.client.initialize()
        stream = await s.client.http.get(
            s.url, headers={**s.client.headers(), "Accept": "text/event-stream"}
        )
        assert stream.status == 200
        try:
            s.auth.rotate()
            mark = s.since()
            status, reply = await asyncio.wait_for(s.client.call("echo", {"text": "x"}), 5)
            assert status == 200
            assert text_of(reply) == "x"
            assert s.count("refresh.done", mark) == 1
        finally:
            stream.close()
