"""The httpx2 transport: the fake AS's core reached by httpx2 clients (what the official MCP SDK
uses, and respx cannot intercept) without sockets, beside a real fake MCP server."""

from __future__ import annotations

import asyncio

import httpx2
import pytest

from freshtoken import ManualClock
from freshtoken.fakes import FakeMCPServer, OAuthCore, TokenFault, httpx2_transport


async def test_refresh_through_the_transport_then_call_a_real_server() -> None:
    core = OAuthCore(issuer="https://as.example")
    pair = core.issue_tokens()
    # Only the authorization server's origin is mounted: the MCP server is a real socket.
    async with (
        FakeMCPServer(authorization_server=core, response_mode="json") as server,
        httpx2.AsyncClient(mounts={core.issuer: httpx2_transport(core)}) as http,
    ):
        metadata = await http.get("https://as.example/.well-known/oauth-authorization-server")
        core.rotate()
        tokens = await http.post(
            metadata.json()["token_endpoint"],
            data={"grant_type": "refresh_token", "refresh_token": pair.refresh_token or ""},
            auth=(core.client_id, core.client_secret),
        )
        assert tokens.status_code == 200
        answer = await http.post(
            server.url,
            headers={
                "Authorization": f"Bearer {tokens.json()['access_token']}",
                "Accept": "application/json, text/event-stream",
            },
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"},
                },
            },
        )
    assert answer.status_code == 200
    assert core.token_requests == 1


def test_a_sync_client_and_a_reset() -> None:
    core = OAuthCore(issuer="http://as.example")
    pair = core.issue_tokens()
    core.add_token_fault(TokenFault(reset=True))
    form = {"grant_type": "refresh_token", "refresh_token": pair.refresh_token or ""}
    with httpx2.Client(transport=httpx2_transport(core)) as client:
        with pytest.raises(httpx2.ReadError):
            client.post(
                "http://as.example/token", data=form, auth=(core.client_id, core.client_secret)
            )
        response = client.post(
            "http://as.example/token", data=form, auth=(core.client_id, core.client_secret)
        )
    assert response.status_code == 200
    assert core.token_requests == 2


async def test_a_delay_waits_on_the_cores_clock() -> None:
    clock = ManualClock()
    core = OAuthCore(issuer="http://as.example", clock=clock)
    core.add_token_fault(TokenFault(delay=30.0, status=200))  # only delays the answer
    async with httpx2.AsyncClient(transport=httpx2_transport(core)) as http:
        request = asyncio.create_task(
            http.post(
                "http://as.example/token",
                data={"grant_type": "client_credentials"},
                auth=(core.client_id, core.client_secret),
            )
        )
        await clock.wait_for_sleepers(1, timeout=5)
        assert not request.done()
        clock.advance(30)
        response = await asyncio.wait_for(request, 5)
    assert response.status_code == 200
