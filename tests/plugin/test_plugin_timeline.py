"""What the timeline section of a failing test reads like, and what loading the plugin costs."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from freshtoken import ManualClock, Timeline


def test_lines_show_clock_time_since_the_start_beside_real_time_and_no_empty_fields() -> None:
    clock = ManualClock(start=1_700_000_000.0)
    timeline = Timeline(clock)
    timeline.record("client", "call.start", request_id="1", tool="echo", session=None)
    clock.advance(3600.5)
    timeline.record("as", "token.issued", token="s3cret", status=None, family=None)
    first, second = timeline.format().splitlines()
    assert re.fullmatch(r"\s+0\s+\+0\.000s\s+\d+\.\dms client call\.start\s+req=1 tool=echo", first)
    assert re.fullmatch(
        r"\s+1\s+\+3600\.500s\s+\d+\.\dms as\s+token\.issued\s+tok=[0-9a-f]{8}", second
    )
    assert "None" not in timeline.format()
    assert timeline.events[1].elapsed is not None
    assert timeline.events[1].elapsed >= timeline.events[0].elapsed  # type: ignore[operator]


def test_a_failing_tests_timeline_shows_the_built_in_clients_steps(
    downstream: pytest.Pytester,
) -> None:
    downstream.makepyfile(
        """
        async def test_fails(freshtoken_client, freshtoken_auth_server, freshtoken_clock):
            freshtoken_clock.advance(10)
            freshtoken_auth_server.rotate()
            assert (await freshtoken_client.call("echo", {"text": "x"})).ok
            assert False
        """
    )
    result = downstream.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- freshtoken timeline -*",
            "*+0.000s*client initialized*",
            "*+10.000s*as     tokens.rotated*",
            "*+10.000s*client call.start*req=2 tool=echo",
            "*+10.000s*client send*req=2 method=tools/call",
            "*+10.000s*proxy  replay*",
            "*+10.000s*client call.result*req=2 status=200",
        ]
    )
    section = result.stdout.str().split("freshtoken timeline")[1]
    assert "=None" not in section


def test_loading_the_harness_does_not_load_hypothesis() -> None:
    code = (
        "import sys, freshtoken.scenarios, freshtoken.plugin._fixtures\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'hypothesis'))\n"
        "freshtoken.scenarios.RotationMachine\n"
        "print('hypothesis.stateful' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == ["[]", "True"]
