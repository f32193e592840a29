"""A fault the test added but that never fired fails the test at teardown (like respx's
``assert_all_called``), unless the fault or the test opts out."""

from __future__ import annotations

import pytest


def test_a_fault_that_never_fires_fails_the_test_at_teardown(downstream: pytest.Pytester) -> None:
    downstream.makepyfile(
        """
        import pytest
        from freshtoken.fakes import Fault, Match, Status401

        async def test_typo(freshtoken_client, freshtoken_faults):
            freshtoken_faults.add(Fault(Match(tool="ehco"), Status401()))
            assert (await freshtoken_client.call("echo", {"text": "hi"})).ok

        async def test_fired(freshtoken_client, freshtoken_faults):
            state = freshtoken_faults.add(Fault(Match(tool="echo"), Status401()))
            assert (await freshtoken_client.call("echo", {"text": "hi"})).ok
            assert state.fired == 1

        async def test_exempt_fault(freshtoken_client, freshtoken_faults):
            freshtoken_faults.add(Fault(Match(tool="ehco"), Status401()), must_fire=False)
            assert (await freshtoken_client.call("echo", {"text": "hi"})).ok

        @pytest.mark.freshtoken(assert_all_faults_fired=False)
        def test_exempt_test(freshtoken_mcp_server, freshtoken_faults):
            freshtoken_faults.add(Fault(Match(tool="ehco"), Status401()))

        def test_failing_test_gets_no_second_error(freshtoken_mcp_server, freshtoken_faults):
            freshtoken_faults.add(Fault(Match(tool="ehco"), Status401()))
            assert False, "the test's own failure"

        def test_factory_servers_are_checked_too(freshtoken_mcp_server_factory):
            server = freshtoken_mcp_server_factory()
            server.faults.add(Fault(Match(tool="never"), Status401()))
        """
    )
    result = downstream.runpytest()
    result.assert_outcomes(passed=5, failed=1, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_typo*",
            "*freshtoken: 1 fault(s) added by the test never fired*",
            '*{"action": {"kind": "status-401"}, "match": {"tool": "ehco"}, "times": 1}*',
            "*must_fire=False*assert_all_faults_fired=False*",
        ]
    )
    errors = sorted(line.split(" ")[1] for line in result.stdout.lines if line.startswith("ERROR "))
    module = "test_a_fault_that_never_fires_fails_the_test_at_teardown.py"
    assert errors == [f"{module}::test_factory_servers_are_checked_too", f"{module}::test_typo"]


def test_a_token_fault_that_never_fires_fails_the_test_too(downstream: pytest.Pytester) -> None:
    # Faults queued on the fake authorization server's token endpoint are faults the test
    # added as well: one no request met means the refresh under test never happened.
    downstream.makepyfile(
        """
        import pytest

        async def test_no_refresh_happened(freshtoken_client, freshtoken_auth_server):
            freshtoken_auth_server.fail_next(status=500, error="server_error")
            assert (await freshtoken_client.call("echo", {"text": "hi"})).ok

        async def test_refresh_met_it(freshtoken_client, freshtoken_auth_server):
            # A fault that lets the grant through; the one refresh meets one of its two uses.
            freshtoken_auth_server.fail_next(times=2, status=200)
            freshtoken_auth_server.rotate()
            assert (await freshtoken_client.call("echo", {"text": "hi"})).ok
            assert freshtoken_auth_server.core.faults_pending == 1

        def test_exempt_token_fault(freshtoken_auth_server):
            freshtoken_auth_server.fail_next(must_fire=False)

        @pytest.mark.freshtoken(assert_all_faults_fired=False)
        def test_exempt_test(freshtoken_auth_server):
            freshtoken_auth_server.fail_next(reset=True)

        def test_factory_servers_are_checked(freshtoken_auth_server_factory):
            freshtoken_auth_server_factory().fail_next(garbage=True, status=502)
        """
    )
    result = downstream.runpytest()
    result.assert_outcomes(passed=5, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_no_refresh_happened*",
            "*freshtoken: 1 fault(s) added by the test never fired*",
            '*token endpoint: {"delay": 0.0, "error": "server_error", "garbage": false,'
            ' "lose_response": false, "reset": false, "status": 500, "times": 1}*',
            "*fail_next(..., must_fire=False)*",
        ]
    )
    errors = sorted(line.split(" ")[1] for line in result.stdout.lines if line.startswith("ERROR "))
    module = "test_a_token_fault_that_never_fires_fails_the_test_too.py"
    assert errors == [
        f"{module}::test_factory_servers_are_checked",
        f"{module}::test_no_refresh_happened",
    ]
