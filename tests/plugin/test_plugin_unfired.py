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
