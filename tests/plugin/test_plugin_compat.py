"""The plugin under pytest-asyncio's strict and auto modes, and under pytest-xdist."""

from __future__ import annotations

import pytest
from plugin_helpers import write_ini

ROTATION_TEST = """
    import pytest

    @pytest.mark.asyncio
    async def test_rotation(freshtoken_client, freshtoken_auth_server):
        freshtoken_auth_server.rotate()
        assert (await freshtoken_client.call("echo", {"text": "after"})).ok

    @pytest.mark.asyncio
    @pytest.mark.freshtoken(auth_failure_style="200-posthog", response_mode="sse")
    async def test_posthog_style(freshtoken_client, freshtoken_auth_server, freshtoken_timeline):
        freshtoken_auth_server.rotate()
        assert (await freshtoken_client.call("echo", {"text": "after"})).ok
        assert freshtoken_timeline.count(actor="proxy", kind="replay") == 1
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_both_pytest_asyncio_modes(pytester: pytest.Pytester, mode: str) -> None:
    write_ini(pytester, mode=mode)
    pytester.makepyfile(ROTATION_TEST)
    result = pytester.runpytest()
    result.stdout.fnmatch_lines([f"asyncio: mode=Mode.{mode.upper()}*"])
    result.assert_outcomes(passed=2)


def test_strict_mode_without_asyncio_marker_is_not_silently_passed(
    pytester: pytest.Pytester,
) -> None:
    # Strict mode leaves unmarked coroutines alone; the fixtures must not paper over that.
    write_ini(pytester, mode="strict")
    pytester.makepyfile(
        """
        async def test_unmarked(freshtoken_client):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*async def functions are not natively supported*", "FAILED *::test_unmarked*"]
    )


def test_under_xdist(pytester: pytest.Pytester) -> None:
    write_ini(pytester)
    pytester.makepyfile(
        test_one=ROTATION_TEST,
        test_two="""
            import pytest

            @pytest.mark.parametrize("n", range(4))
            async def test_many_independent_stacks(n, freshtoken_client, freshtoken_mcp_url,
                                                   freshtoken_auth_server):
                freshtoken_auth_server.rotate()
                assert (await freshtoken_client.call("add", {"a": n, "b": 1})).ok
                assert freshtoken_auth_server.token_requests == 1

            async def test_failure_report_crosses_workers(freshtoken_client):
                await freshtoken_client.call("echo", {"text": "x"})
                assert False
            """,
    )
    result = pytester.runpytest_subprocess(
        "-n",
        "2",
        "--freshtoken-catalogue",
        "-k",
        "not seed-over-tls and (test_ or seed or posthog)",
    )
    result.stdout.fnmatch_lines(["*2 workers [[]9 items[]]*", "*- freshtoken timeline -*"])
    result.assert_outcomes(passed=8, failed=1)
