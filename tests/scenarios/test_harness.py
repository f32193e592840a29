"""The one harness builder: what it starts from a Setup, and how it closes."""

from __future__ import annotations

import ssl

import httpx
import pytest

from freshtoken import ManualClock, ServerSideError, Timeline
from freshtoken._setup import Setup
from freshtoken.fakes import FaultPlan, TokenPolicy
from freshtoken.proxy import Limits
from freshtoken.scenarios import DEFAULT_TARGET, Harness, McpClient


async def test_builds_everything_from_one_setup() -> None:
    setup = Setup(
        protocol_version="2025-06-18",
        response_mode="sse",
        access_ttl=30,
        report_expires_in=False,
        rotate_refresh_tokens=False,
        reuse_detection=False,
        grace_period=2.5,
        auth_failure_style="200-posthog",
        stream_auth="cut",
    )
    clock, faults = ManualClock(), FaultPlan()
    timeline = Timeline(clock)
    async with Harness(setup, clock=clock, timeline=timeline, faults=faults) as harness:
        auth, mcp = harness.authorization_server, harness.mcp_server
        assert auth.policy == TokenPolicy(
            access_ttl=30,
            report_expires_in=False,
            rotate_refresh_tokens=False,
            reuse_detection=False,
            grace_period=2.5,
        )
        assert (mcp.protocol_version, mcp.response_mode) == ("2025-06-18", "sse")
        assert (mcp.auth_failure_style, mcp.stream_auth) == ("200-posthog", "cut")
        assert mcp.faults is faults
        assert auth.clock is clock
        assert mcp.clock is clock
        assert harness.proxy.timeline is timeline
        assert harness.proxy_url == harness.proxy.local_url(DEFAULT_TARGET)
        assert harness.seeded_expires_at() is None  # the policy does not report expires_in
        async with McpClient(
            harness.proxy_url, timeline=timeline, protocol_version="2025-06-18"
        ) as client:
            assert (await client.initialize()).status == 200
            assert (await client.call("whoami", {})).ok
        # The proxy started from the seeded pair: the first call spent no grant.
        assert auth.token_requests_seen() == []
        whoami = timeline.select(actor="mcp", kind="request")[-1]
        assert whoami.token == timeline.select(actor="as", kind="token.issued")[0].token


async def test_closes_last_first_and_reraises_a_fake_servers_own_error() -> None:
    closed: list[str] = []

    async def run() -> None:
        async with Harness() as harness:
            for name, thing in (
                ("auth", harness.authorization_server),
                ("mcp", harness.mcp_server),
                ("proxy", harness.proxy),
            ):

                async def stop(stop=thing.stop, name=name) -> None:  # type: ignore[no-untyped-def]
                    closed.append(name)
                    await stop()

                thing.stop = stop  # type: ignore[method-assign]

            def crashed() -> None:
                raise ServerSideError("handler crashed")

            harness.mcp_server.check = crashed  # type: ignore[method-assign]

    with pytest.raises(ServerSideError, match="handler crashed"):
        await run()
    assert closed == ["proxy", "mcp", "auth"]


async def test_tls_brings_its_own_ca_and_removes_it() -> None:
    async with Harness(Setup(tls=True)) as harness:
        ca = harness.ca
        assert ca is not None
        assert ca.ca_path.exists()
        assert harness.mcp_server.url.startswith("https://")
        assert harness.authorization_server.url.startswith("https://")
        assert isinstance(harness.verify, ssl.SSLContext)
        async with httpx.AsyncClient(verify=harness.verify) as http:
            response = await http.get(harness.authorization_server.metadata_url)
        assert response.status_code == 200
    assert not ca.ca_path.exists()


async def test_lazy_builds_only_what_is_asked_and_proxy_options_pass_through() -> None:
    limits = Limits(max_body=4096)
    async with Harness(lazy=True, proxy_options={"limits": limits}) as harness:
        assert not hasattr(harness, "authorization_server")
        auth = await harness.start_authorization_server()
        second = await harness.start_authorization_server()
        assert harness.authorization_server is auth is not second
        mcp = await harness.start_mcp_server(second)
        proxy = await harness.start_proxy(mcp, authorization_server=second)
        assert proxy.limits is limits
        # The seeded pair came from the server the token source refreshes at.
        assert harness.seed(second) is harness.seed(second)
        assert harness.seed(second) != harness.seed(auth)
        bare = await harness.start_bare_proxy(limits=Limits(max_body=1))
        assert bare.limits.max_body == 1
        assert harness.proxy is proxy


async def test_a_setup_that_reports_tool_errors_opts_the_proxy_in() -> None:
    async with Harness(Setup(auth_failure_style="200-tool-error")) as harness:
        async with McpClient(harness.proxy_url, timeline=harness.timeline) as client:
            await client.initialize()
            harness.authorization_server.rotate()
            assert (await client.call("echo", {"text": "after"})).ok
        assert harness.timeline.count(actor="proxy", kind="replay") == 1


def test_setup_fields_keep_one_rule_each() -> None:
    for bad in ({"access_ttl": 0}, {"grace_period": -1}, {"tls": 1}, {"response_mode": "xml"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Setup(**bad)  # type: ignore[arg-type]


async def test_a_client_sends_through_another_http_client_only_inside_the_block() -> None:
    # What the pytest fixture does: the handshake through an aiohttp-backed httpx client on
    # its loop, the test's calls through the client's own pool.
    from httpx_aiohttp import AiohttpTransport

    seen: dict[str, list[str]] = {"own": [], "other": []}

    def recorder(name: str) -> object:
        async def record(request: httpx.Request) -> None:
            seen[name].append(request.method)

        return record

    async with Harness(Setup()) as harness:
        client = McpClient(harness.proxy_url, timeline=harness.timeline)
        client._http.event_hooks["request"].append(recorder("own"))
        other = httpx.AsyncClient(
            transport=AiohttpTransport(trust_env=False),
            timeout=client.http_timeout,
            event_hooks={"request": [recorder("other")]},
        )
        async with client, other:
            with client.sending_through(other):
                assert (await client.initialize()).status == 200
            assert seen == {"own": [], "other": ["POST", "POST"]}
            assert (await client.call("echo", {"text": "after"})).ok
            assert seen == {"own": ["POST"], "other": ["POST", "POST"]}
            with pytest.raises(RuntimeError), client.sending_through(other):
                raise RuntimeError("the block failed")
            assert (await client.call("echo", {"text": "again"})).ok
        assert seen["own"] == ["POST", "POST"]
        # The calls after the block ran in the session the handshake opened.
        calls = harness.timeline.select(actor="mcp", kind="request")[-2:]
        assert [event.detail["session"] for event in calls] == [client.session_id] * 2
