from __future__ import annotations

import pytest


def test_client_survives_rotation_through_the_proxy(downstream: pytest.Pytester) -> None:
    downstream.makepyfile(
        """
        from freshtoken import ManualClock, Timeline
        from freshtoken.fakes import FakeCA, FaultPlan

        async def test_rotation(freshtoken_client, freshtoken_auth_server, freshtoken_mcp_server,
                                freshtoken_timeline, freshtoken_clock, freshtoken_faults,
                                freshtoken_mcp_url):
            assert isinstance(freshtoken_clock, ManualClock)
            assert isinstance(freshtoken_timeline, Timeline)
            assert freshtoken_mcp_server.faults is freshtoken_faults
            assert "/mcp" in freshtoken_mcp_url and "Bearer" not in freshtoken_mcp_url
            first = await freshtoken_client.call("whoami", {})
            freshtoken_auth_server.rotate()
            second = await freshtoken_client.call("whoami", {})
            assert first.ok and second.ok
            assert first.result != second.result
            assert freshtoken_timeline.count(actor="proxy", kind="replay") == 1
            assert freshtoken_auth_server.token_requests == 1

        def test_ca_is_a_fake_ca(freshtoken_ca):
            assert isinstance(freshtoken_ca, FakeCA)
            assert freshtoken_ca.ca_path.exists()
        """
    )
    downstream.runpytest().assert_outcomes(passed=2)


def test_ca_is_one_instance_per_session(downstream: pytest.Pytester) -> None:
    downstream.makepyfile(
        test_one="""
            SEEN = []

            def test_first(freshtoken_ca):
                SEEN.append(freshtoken_ca)

            def test_second(freshtoken_ca):
                SEEN.append(freshtoken_ca)
                assert SEEN[0] is SEEN[1]
        """,
        test_two="""
            import pytest
            import test_one

            @pytest.mark.freshtoken(tls=True)
            async def test_tls_fakes_use_the_session_ca(freshtoken_ca, freshtoken_mcp_server):
                assert freshtoken_ca is test_one.SEEN[0]
                assert freshtoken_mcp_server.url.startswith("https://")
        """,
    )
    downstream.runpytest().assert_outcomes(passed=3)


def test_fault_plan_and_clock(downstream: pytest.Pytester) -> None:
    downstream.makepyfile(
        """
        import pytest
        from freshtoken.fakes import AuthFailed200, Fault, Match

        async def test_auth_failed_in_200_is_replayed(freshtoken_client, freshtoken_faults,
                                                       freshtoken_timeline):
            freshtoken_faults.add(Fault(Match(tool="echo"), AuthFailed200(shape="posthog")))
            outcome = await freshtoken_client.call("echo", {"text": "hi"})
            assert outcome.ok
            assert freshtoken_timeline.count(actor="proxy", kind="auth.failure") == 1

        @pytest.mark.freshtoken(access_ttl=60, report_expires_in=False)
        async def test_expiry_by_clock(freshtoken_client, freshtoken_clock, freshtoken_auth_server):
            assert (await freshtoken_client.call("echo", {"text": "a"})).ok
            freshtoken_clock.advance(61)
            assert (await freshtoken_client.call("echo", {"text": "b"})).ok
            assert freshtoken_auth_server.token_requests == 1
        """
    )
    downstream.runpytest().assert_outcomes(passed=2)


def test_tls_marker_serves_https_from_the_session_ca(downstream: pytest.Pytester) -> None:
    downstream.makepyfile(
        """
        import ssl

        import httpx
        import pytest

        pytestmark = pytest.mark.freshtoken(tls=True)

        async def test_https(freshtoken_client, freshtoken_auth_server, freshtoken_mcp_server):
            assert freshtoken_auth_server.url.startswith("https://")
            assert freshtoken_mcp_server.url.startswith("https://")
            freshtoken_auth_server.rotate()
            assert (await freshtoken_client.call("echo", {"text": "over tls"})).ok

        async def test_same_ca(freshtoken_ca, freshtoken_mcp_server):
            # A client trusting only the session CA's PEM file reaches the fake.
            context = ssl.create_default_context(cafile=str(freshtoken_ca.ca_path))
            async with httpx.AsyncClient(verify=context) as http:
                response = await http.get(freshtoken_mcp_server.resource_metadata_url)
            assert response.status_code == 200
        """
    )
    downstream.runpytest().assert_outcomes(passed=2)


def test_factories_build_several_servers_and_close_last_first(
    downstream: pytest.Pytester,
) -> None:
    downstream.makepyfile(
        """
        import pytest
        from freshtoken.fakes import FakeAuthorizationServer, FakeMCPServer
        from freshtoken.proxy import RefreshTokenSource
        from freshtoken.scenarios import McpClient

        CLOSED = []

        async def test_two_upstreams(freshtoken_auth_server_factory, freshtoken_mcp_server_factory,
                                     freshtoken_proxy_factory, freshtoken_timeline):
            auth = freshtoken_auth_server_factory()
            first = freshtoken_mcp_server_factory(authorization_server=auth)
            second = freshtoken_mcp_server_factory(authorization_server=auth,
                                                   protocol_version="2025-06-18")
            assert isinstance(auth, FakeAuthorizationServer)
            assert isinstance(second, FakeMCPServer) and first.faults is not second.faults
            proxy = freshtoken_proxy_factory()
            for name, server in (("one", first), ("two", second)):
                source = RefreshTokenSource(auth.token_endpoint, auth.client_id, auth.client_secret,
                                            refresh_token=auth.issue_tokens().refresh_token,
                                            clock=auth.clock)
                url = proxy.register(name, server.url, source)
                async with McpClient(url, timeline=freshtoken_timeline,
                                     protocol_version=server.protocol_version) as client:
                    await client.initialize()
                    assert (await client.call("echo", {"text": name})).ok
                    await proxy.refresh(name)  # runs on the fixtures' loop
                    assert (await client.call("echo", {"text": name})).ok
            for thing, label in ((auth, "auth"), (first, "first"), (second, "second"),
                                 (proxy, "proxy")):
                async def record(stop=thing.stop, label=label):
                    CLOSED.append(label)
                    await stop()
                thing.stop = record

        def test_closed_last_first():
            assert CLOSED == ["proxy", "second", "first", "auth"]
        """
    )
    downstream.runpytest().assert_outcomes(passed=2)


def test_server_side_error_fails_teardown(downstream: pytest.Pytester) -> None:
    downstream.makepyfile(
        """
        from freshtoken import ServerSideError

        async def test_crash(freshtoken_mcp_server):
            def boom():
                raise ServerSideError("handler crashed")
            freshtoken_mcp_server.check = boom
        """
    )
    result = downstream.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_crash*", "*handler crashed*"])


def test_handles_run_methods_on_the_fixtures_loop(downstream: pytest.Pytester) -> None:
    downstream.makepyfile(
        """
        import threading

        from freshtoken.fakes import FakeMCPServer
        from freshtoken.plugin import RemoteCall

        def test_sync_controls(freshtoken_mcp_server, freshtoken_auth_server, freshtoken_proxy,
                               freshtoken_client):
            assert isinstance(freshtoken_mcp_server, FakeMCPServer)
            assert "drop_sessions" in dir(freshtoken_mcp_server)
            assert freshtoken_mcp_server.sessions  # the client's
            freshtoken_mcp_server.drop_sessions()  # closes their streams: loop-bound work
            assert freshtoken_mcp_server.sessions == []
            freshtoken_mcp_server.auth_failure_style = "200-jsonrpc"
            assert freshtoken_mcp_server.auth_failure_style == "200-jsonrpc"
            call = freshtoken_proxy.refresh("mcp")
            assert isinstance(call, RemoteCall)
            assert call.result() is None
            assert freshtoken_auth_server.token_requests == 1

        async def test_async_tool_sees_the_loop_thread(freshtoken_mcp_server, freshtoken_client,
                                                       freshtoken_auth_server):
            seen = []

            @freshtoken_mcp_server.tool("where")
            async def where(arguments, ctx):
                seen.append(threading.current_thread().name)
                freshtoken_auth_server.rotate()
                return "here"

            outcome = await freshtoken_client.call("where", {})
            assert outcome.ok and outcome.result["content"][0]["text"] == "here"
            assert seen == ["freshtoken-fixtures"]
            assert threading.current_thread().name != "freshtoken-fixtures"
            # The rotation from inside the tool reached the authorization server.
            assert (await freshtoken_client.call("echo", {"text": "after"})).ok
            assert freshtoken_auth_server.token_requests == 1
        """
    )
    downstream.runpytest().assert_outcomes(passed=2)


def test_a_client_that_cannot_initialize_is_a_setup_error_in_one_line(
    downstream: pytest.Pytester,
) -> None:
    # The handshake runs at setup: a proxy answering 5xx to initialize, or nothing listening at
    # the URL, errors the test at setup with what went wrong (no traceback), bounded in time.
    downstream.makeconftest(
        """
        import socket

        import pytest
        from freshtoken.fakes import Fault, Match, Status5xx
        from freshtoken.plugin._faults import FixtureFaultPlan

        @pytest.fixture
        def freshtoken_faults(request):
            plan = FixtureFaultPlan()
            if "five_hundred" in request.node.name:
                plan.add(Fault(Match(rpc_method="initialize"), Status5xx(), times=5))
            return plan

        @pytest.fixture
        def freshtoken_mcp_url(request, freshtoken_proxy):
            if "nothing_listens" not in request.node.name:
                return freshtoken_proxy.local_url("mcp")
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            return f"http://127.0.0.1:{port}/mcp"
        """
    )
    downstream.makepyfile(
        """
        async def test_five_hundred(freshtoken_client):
            pass

        async def test_nothing_listens(freshtoken_client):
            pass
        """
    )
    result = downstream.runpytest()
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_five_hundred*",
            "*freshtoken_client could not initialize: *status=503*",
            "*ERROR at setup of test_nothing_listens*",
            "*freshtoken_client could not initialize: *Connect call failed*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
