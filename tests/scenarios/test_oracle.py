"""The verdicts are independent of the subject: they do not share its matcher and do not count
its events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from freshtoken.scenarios import (
    Environment,
    McpClient,
    SubjectSession,
    load_catalogue,
    run_scenario,
)
from freshtoken.scenarios._session import ClientSession
from freshtoken.scenarios._tokens import says_auth_failed

CATALOGUE = {s.name: s for s in load_catalogue()}


@dataclass(frozen=True)
class ProxyWithMatcher:
    """freshtoken's proxy with a matcher of the test's choosing."""

    matcher: Any
    name: str = "proxy-with-matcher"
    description: str = "the proxy with another auth-failure matcher"

    @asynccontextmanager
    async def session(self, env: Environment) -> AsyncIterator[SubjectSession]:
        await env.harness.start_proxy(matcher=self.matcher)
        async with McpClient(env.harness.proxy_url, timeline=env.timeline) as client:
            yield ClientSession(client)


@dataclass(frozen=True)
class Forger:
    """The proxy, plus a subject that writes misleading events on the shared timeline."""

    name: str = "forger"
    description: str = "claims refreshes it never made"

    @asynccontextmanager
    async def session(self, env: Environment) -> AsyncIterator[SubjectSession]:
        await env.harness.start_proxy()
        for _ in range(5):
            env.timeline.record("as", "token.request", grant_type="refresh_token")
            env.timeline.record("proxy", "refresh.start")
        async with McpClient(env.harness.proxy_url, timeline=env.timeline) as client:
            yield ClientSession(client)


@pytest.mark.parametrize(
    "name",
    ["auth-failure-200-jsonrpc", "auth-failure-posthog-shape", "auth-failure-first-sse-event"],
)
async def test_a_proxy_whose_matcher_misses_fails_the_body_scenarios(name: str) -> None:
    def never(message: Any) -> bool:
        return False

    result = await run_scenario(CATALOGUE[name], ProxyWithMatcher(never))
    assert not result.passed
    assert "every_call_answered" in {check.name for check in result.failures}
    assert result.grants == {}  # nothing refreshed: the miss is what failed it


async def test_counts_come_from_what_the_authorization_server_saw() -> None:
    scenario = CATALOGUE["substring-in-result-is-not-auth-failure"]
    assert scenario.invariants.no_refresh
    result = await run_scenario(scenario, Forger())
    assert result.timeline.count(actor="as", kind="token.request") == 5
    assert result.passed, result.format_failures()
    assert result.token_requests == 0
    assert result.grants == {}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            {
                "jsonrpc": "2.0",
                "id": 1,
                "error": {"code": -32001, "message": "Authentication failed"},
            },
            True,
        ),
        ({"error": {"code": "authentication_failed"}}, True),
        ({"error": {"code": -32000, "message": "x", "data": {"error": "invalid_token"}}}, True),
        (
            {"result": {"isError": True, "content": [{"type": "text", "text": "Token expired"}]}},
            True,
        ),
        (
            {"result": {"content": [{"type": "text", "text": "authentication_failed yesterday"}]}},
            False,
        ),
        ({"error": {"code": "insufficient_scope", "message": "needs scope mcp"}}, False),
        ({"error": {"code": -32602, "message": "Invalid params"}}, False),
        ([{"error": {"code": "authentication_failed"}}], False),
        ("authentication_failed", False),
    ],
)
def test_the_reference_rule(message: Mapping[str, Any], expected: bool) -> None:
    assert says_auth_failed(message) is expected
