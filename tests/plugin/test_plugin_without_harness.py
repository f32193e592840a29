"""Installed for the proxy alone (no harness extra), the plugin still loads and says what to install.

The harness's packages are hidden from a subprocess by a ``sitecustomize`` that puts ``None`` in
``sys.modules`` for them: their imports then fail and ``importlib.util.find_spec`` finds nothing,
as in an environment where they were never installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from plugin_helpers import write_ini

from freshtoken._extras import HARNESS_EXTRA, HARNESS_MODULES
from freshtoken.plugin._stubs import FIXTURE_NAMES

HIDE = f"import sys\nfor name in {sorted(HARNESS_MODULES)!r}:\n    sys.modules[name] = None\n"


@pytest.fixture
def without_harness(
    pytester: pytest.Pytester,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> pytest.Pytester:
    site = tmp_path_factory.mktemp("hide-harness")
    (site / "sitecustomize.py").write_text(HIDE)
    monkeypatch.setenv("PYTHONPATH", str(site))
    # Only freshtoken's plugin: the harness's own pytest plugins cannot load without it.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    # A project without pytest-asyncio: no asyncio settings, warnings are errors.
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    return pytester


def _literal(text: str) -> str:
    """``text`` as an fnmatch pattern matching itself (``[harness]`` is not a character class)."""
    return "".join(f"[{c}]" if c in "[]*?" else c for c in text)


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "freshtoken.plugin", "-p", "no:cacheprovider", *args)


def test_unrelated_tests_run_and_fixtures_say_what_to_install(
    without_harness: pytest.Pytester,
) -> None:
    without_harness.makepyfile(
        """
        import pytest

        def test_plain():
            assert 1 + 1 == 2

        @pytest.mark.freshtoken(access_ttl=5)
        def test_marked_without_fixtures():
            pass

        def test_uses_the_client(freshtoken_client):
            pass
        """
    )
    result = _run(without_harness)
    result.assert_outcomes(passed=2, errors=1)
    missing = ", ".join(sorted(HARNESS_MODULES.values()))
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_uses_the_client*",
            "*UsageError: "
            + _literal(
                f"the fixture freshtoken_client needs the harness extra, which is not "
                f"installed (missing: {missing}): {HARNESS_EXTRA}"
            ),
        ]
    )


@pytest.mark.parametrize(
    ("option", "named"),
    [
        (["--freshtoken-catalogue"], "--freshtoken-catalogue"),
        (["--freshtoken-subject", "baked-bearer"], "--freshtoken-subject"),
        (["--freshtoken-html", "report.html"], "--freshtoken-html"),
    ],
)
def test_harness_options_are_usage_errors(
    without_harness: pytest.Pytester, option: list[str], named: str
) -> None:
    result = _run(without_harness, *option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: {named} needs the harness extra, *: {_literal(HARNESS_EXTRA)}"]
    )


def _listed_fixtures(result: pytest.RunResult) -> set[str]:
    return {
        line.split()[0].split("[")[0]
        for line in result.stdout.lines
        if line.startswith("freshtoken_")
    }


def test_the_stand_ins_cover_every_public_fixture(
    without_harness: pytest.Pytester, pytester: pytest.Pytester
) -> None:
    stand_ins = _listed_fixtures(_run(without_harness, "--fixtures"))
    assert stand_ins == set(FIXTURE_NAMES)


def test_with_the_harness_the_same_fixtures_exist(pytester: pytest.Pytester) -> None:
    write_ini(pytester)
    assert _listed_fixtures(pytester.runpytest("--fixtures")) == set(FIXTURE_NAMES)


def test_the_hiding_works(without_harness: pytest.Pytester, tmp_path: Path) -> None:
    # The other tests mean something only if the harness is really out of reach.
    without_harness.makepyfile(
        """
        import importlib.util

        def test_hidden():
            for name in ("pytest_asyncio", "hypothesis", "respx", "trustme"):
                assert importlib.util.find_spec(name) is None
        """
    )
    _run(without_harness).assert_outcomes(passed=1)
