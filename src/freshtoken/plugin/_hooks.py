"""Hook implementations: options, the marker, the timeline report section, catalogue items."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from freshtoken._errors import ConfigError
from freshtoken._extras import harness_missing
from freshtoken._timeline import Timeline
from freshtoken.plugin._config import FreshtokenConfig
from freshtoken.plugin._options import add_options, options_key, read_options

__all__ = [
    "FIXTURES_PLUGIN",
    "TIMELINE_SECTION",
    "call_passed_key",
    "config_key",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_runtest_makereport",
    "pytest_runtest_setup",
    "timeline_key",
]

TIMELINE_SECTION = "freshtoken timeline"
FIXTURES_PLUGIN = "freshtoken-fixtures"

timeline_key = pytest.StashKey[Timeline]()
config_key = pytest.StashKey[FreshtokenConfig]()
call_passed_key = pytest.StashKey[bool]()
"""Whether the test body passed: only then do unfired faults fail it at teardown."""

_MARKER_HELP = (
    "freshtoken(protocol_version=, access_ttl=, report_expires_in=, rotate_refresh_tokens=, "
    "reuse_detection=, grace_period=, response_mode=, tls=, auth_failure_style=, stream_auth=, "
    "assert_all_faults_fired=): configure the freshtoken fakes for this test"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``--freshtoken-*`` options and their ini settings."""
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, resolve the options (a bad value is a usage error) and register
    the fixtures, or stand-ins that say what to install when the harness extra is missing."""
    config.addinivalue_line("markers", _MARKER_HELP)
    config.addinivalue_line(
        "markers", "freshtoken_scenario: a scenario item from the freshtoken catalogue"
    )
    missing = harness_missing()
    config.stash[options_key] = read_options(config, missing=missing)
    if missing:
        from freshtoken.plugin._stubs import stub_fixtures

        config.pluginmanager.register(stub_fixtures(missing), FIXTURES_PLUGIN)
    else:
        from freshtoken.plugin import _fixtures

        config.pluginmanager.register(_fixtures, FIXTURES_PLUGIN)
        options = config.stash[options_key]
        if options.html is not None:
            from freshtoken.plugin._html import HTML_PLUGIN_NAME, HtmlReport

            config.pluginmanager.register(HtmlReport(options.html), HTML_PLUGIN_NAME)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Validate ``@pytest.mark.freshtoken`` before any fixture runs, so a typo fails setup clearly."""
    markers = [(m.args, m.kwargs) for m in item.iter_markers("freshtoken")]
    if not markers:
        return
    try:
        item.stash[config_key] = FreshtokenConfig().apply_markers(markers)
    except ConfigError as exc:
        pytest.fail(f"{item.nodeid}: {exc}", pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Append the catalogue items first, so ``-k`` and ``-m`` selection (which runs later) sees them."""
    options = config.stash[options_key]
    if not options.catalogue:
        return
    from freshtoken.plugin._catalogue import collect_catalogue

    items.extend(collect_catalogue(session, options))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the merged timeline to the report as its own section (per the timeline setting)."""
    report = yield
    if report.when == "call":
        item.stash[call_passed_key] = report.passed
    timeline = item.stash.get(timeline_key, None)
    if timeline is None:
        return report
    mode = item.config.stash[options_key].timeline
    if (mode == "on-failure" and report.failed) or (
        mode == "always" and (report.when == "call" or report.failed)
    ):
        report.sections.append((TIMELINE_SECTION, timeline.format() or "(no events recorded)"))
    return report
