from __future__ import annotations

import pytest
from plugin_helpers import write_ini

from freshtoken.plugin._hooks import TIMELINE_SECTION
from freshtoken.scenarios._loader import load_catalogue

FAILING = """
    async def test_fails_after_rotation(freshtoken_client, freshtoken_auth_server):
        await freshtoken_client.call("echo", {"text": "before"})
        freshtoken_auth_server.rotate()
        await freshtoken_client.call("echo", {"text": "after"})
        assert False, "deliberate"

    async def test_passes(freshtoken_client):
        assert (await freshtoken_client.call("echo", {"text": "fine"})).ok

    def test_fails_without_freshtoken():
        assert False
"""


def test_timeline_section_on_failure(downstream: pytest.Pytester) -> None:
    downstream.makepyfile(FAILING)
    result = downstream.runpytest()
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    assert out.count(f" {TIMELINE_SECTION} ") == 1
    result.stdout.fnmatch_lines(
        [
            f"*- {TIMELINE_SECTION} -*",
            "*as*token.request*",
            "*proxy*replay*",
            "*mcp*request*tok=*",
        ]
    )


def test_timeline_section_carries_fingerprints_not_tokens(pytester: pytest.Pytester) -> None:
    write_ini(pytester)
    pytester.makeconftest(
        """
        import pytest

        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_makereport(item, call):
            report = yield
            if "freshtoken timeline" in dict(report.sections):
                report.user_properties.append(("tokens", item.funcargs["issued"]))
            return report

        @pytest.fixture
        def issued(freshtoken_auth_server):
            return []
        """
    )
    pytester.makepyfile(
        """
        from freshtoken import fingerprint

        async def test_leaks_nothing(freshtoken_client, freshtoken_auth_server, issued):
            pair = freshtoken_auth_server.issue_tokens()
            issued.extend([pair.access_token, pair.refresh_token])
            freshtoken_auth_server.core.expire(pair.access_token)
            await freshtoken_client.call("echo", {"text": "x"})
            assert False
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    reports = [r for r in result.reprec.getreports("pytest_runtest_logreport") if r.when == "call"]
    section = dict(reports[0].sections)[TIMELINE_SECTION]
    tokens = dict(reports[0].user_properties)["tokens"]
    assert "tok=" in section
    assert all(token not in section for token in tokens)


@pytest.mark.parametrize(("mode", "sections"), [("always", 2), ("never", 0)])
def test_timeline_modes(downstream: pytest.Pytester, mode: str, sections: int) -> None:
    downstream.makepyfile(FAILING)
    result = downstream.runpytest(f"--freshtoken-timeline={mode}", "-rP")
    result.assert_outcomes(passed=1, failed=2)
    assert result.stdout.str().count(f" {TIMELINE_SECTION} ") == sections


def test_timeline_ini_setting(pytester: pytest.Pytester) -> None:
    write_ini(pytester, extra="freshtoken_timeline = never")
    pytester.makepyfile(FAILING)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=2)
    assert TIMELINE_SECTION not in result.stdout.str()


def test_bad_timeline_values_are_usage_errors(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--freshtoken-timeline=sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--freshtoken-timeline*invalid choice*'sometimes'*"])
    pytester.makeini("[pytest]\nfreshtoken_timeline = sometimes\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*freshtoken_timeline = 'sometimes' is not allowed; expected one of on-failure, always, never*"
        ]
    )


def test_bad_subject_is_a_usage_error_naming_the_subjects(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--freshtoken-subject", "nginx")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*--freshtoken-subject 'nginx' is not a known subject; expected one of proxy, baked-bearer, *"
        ]
    )
    result = pytester.runpytest("--freshtoken-subject", "command")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*needs the client's command line: --freshtoken-command CMD*"])


def test_catalogue_collected_as_items(downstream: pytest.Pytester) -> None:
    result = downstream.runpytest("--freshtoken-catalogue", "--collect-only", "-q")
    names = [scenario.name for scenario in load_catalogue()]
    assert len(names) >= 20
    result.stdout.fnmatch_lines([f"freshtoken-catalogue::{name}" for name in names])
    assert f"{len(names)} tests collected" in result.stdout.str()


def test_catalogue_items_run_and_select_with_k(downstream: pytest.Pytester) -> None:
    result = downstream.runpytest("--freshtoken-catalogue", "-k", "seed or posthog", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        ["*::seed-over-tls PASSED*", "*::seed-stale-bearer-after-rotation PASSED*"]
    )


def test_catalogue_failure_on_buggy_subject_shows_checks_and_timeline(
    pytester: pytest.Pytester,
) -> None:
    write_ini(pytester, extra="freshtoken_subject = baked-bearer\nfreshtoken_catalogue = true")
    result = pytester.runpytest("-k", "seed-stale-bearer-after-rotation")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*seed-stale-bearer-after-rotation on baked-bearer: FAILED",
            "*every_call_answered: *",
            f"*- {TIMELINE_SECTION} -*",
            "*client*send*tok=*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_user_catalogue_dir(downstream: pytest.Pytester) -> None:
    scenarios = downstream.mkdir("my-scenarios")
    (scenarios / "my-rotation.toml").write_text(
        """
        title = "my own rotation scenario"
        reproduces = "my-org/my-client#1"

        [[steps]]
        step = "initialize"

        [[steps]]
        step = "fault"
        target = "as"
        action = "rotate"

        [[steps]]
        step = "call"
        tool = "echo"
        arguments = { text = "hi" }
        """
    )
    result = downstream.runpytest(
        "--freshtoken-catalogue-dir", str(scenarios), "-k", "my-rotation", "-v"
    )
    result.assert_outcomes(passed=1)
    (scenarios / "broken.toml").write_text("name = 3\n")
    result = downstream.runpytest("--freshtoken-catalogue-dir", str(scenarios))
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*ERROR collecting freshtoken-catalogue*", "*freshtoken catalogue: *broken.toml: name*"]
    )


def test_catalogue_is_off_by_default(downstream: pytest.Pytester) -> None:
    result = downstream.runpytest("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
