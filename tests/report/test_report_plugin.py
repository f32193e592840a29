"""``pytest --freshtoken-html``: the report of a pytest run, in one process and under xdist."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_helpers import Element, parse, sections

TESTS = """
import pytest


async def test_expects_the_stale_bearer_to_fail(freshtoken_client, freshtoken_auth_server):
    assert (await freshtoken_client.call("echo", {"text": "before"})).ok
    freshtoken_auth_server.rotate()
    outcome = await freshtoken_client.call("whoami", {})
    # Wrong on purpose: the proxy refreshes and the call succeeds.
    assert not outcome.ok, "the call after the rotation succeeded"


async def test_survives_rotation(freshtoken_client, freshtoken_auth_server):
    freshtoken_auth_server.rotate()
    assert (await freshtoken_client.call("echo", {"text": "after"})).ok


@pytest.mark.skip(reason="not for this transport")
def test_skipped():
    pass
"""

ARGS = (
    "--freshtoken-catalogue",
    "--freshtoken-subject",
    "baked-bearer",
    "-k",
    "seed-stale or test_",
)


def _ini(pytester: pytest.Pytester, extra: str = "") -> None:
    pytester.makeini(
        "[pytest]\n"
        "asyncio_mode = auto\n"
        "asyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n"
        f"{extra}\n"
    )


def _by_name(document: Element) -> dict[str, Element]:
    return {section.attrs["data-name"]: section for section in sections(document)}


def _check_report(path: Path) -> None:
    items = _by_name(parse(path.read_text(encoding="utf-8")))
    assert set(items) == {
        "test_report.py::test_expects_the_stale_bearer_to_fail",
        "test_report.py::test_survives_rotation",
        "test_report.py::test_skipped",
        "freshtoken-catalogue::seed-stale-bearer-after-rotation",
    }
    outcomes = {name: s.attrs["data-outcome"] for name, s in items.items()}
    assert outcomes == {
        "test_report.py::test_expects_the_stale_bearer_to_fail": "failed",
        "test_report.py::test_survives_rotation": "passed",
        "test_report.py::test_skipped": "not applicable",
        "freshtoken-catalogue::seed-stale-bearer-after-rotation": "failed",
    }

    plain = items["test_report.py::test_expects_the_stale_bearer_to_fail"]
    assert "open" in plain.find("details")[0].attrs
    [check] = plain.find("li")
    assert check.attrs["data-check"] == "assertion"
    assert "the call after the rotation succeeded" in check.all_text()
    [svg] = plain.find("svg", cls="diagram")
    assert [g.attrs["data-lane"] for g in svg.find("g", cls="lane")] == [
        "client",
        "proxy",
        "mcp",
        "as",
    ]
    fills: dict[str, set[str]] = {}
    for chip in svg.find("g", cls="tok"):
        fills.setdefault(chip.attrs["data-token"], set()).update(
            r.attrs["fill"] for r in chip.find("rect")
        )
    assert len(fills) >= 4  # seeded access and refresh token, then the refreshed pair
    assert all(len(colours) == 1 for colours in fills.values())
    assert len({min(c) for c in fills.values()}) == len(fills)
    assert svg.find("g", cls="stale")  # the seeded bearer, sent once after the rotation

    passing = items["test_report.py::test_survives_rotation"]
    assert "open" not in passing.find("details")[0].attrs
    assert len(passing.find("svg", cls="diagram")) == 1

    skipped = items["test_report.py::test_skipped"]
    assert skipped.find("svg") == []
    assert "not for this transport" in skipped.all_text()

    scenario = items["freshtoken-catalogue::seed-stale-bearer-after-rotation"]
    assert [li.attrs["data-check"] for li in scenario.find("li")] == ["every_call_answered"]
    [svg] = scenario.find("svg", cls="diagram")
    pinned = [row for row in svg.find("g", cls="row") if "pinned" in row.classes]
    assert len(pinned) == 2  # the two calls the stale bearer lost
    assert {row.attrs["data-pins"] for row in pinned} == {"every_call_answered"}


def test_html_option_reports_a_failing_test_its_diagram_and_a_catalogue_item(
    pytester: pytest.Pytester,
) -> None:
    _ini(pytester)
    pytester.makepyfile(test_report=TESTS)
    result = pytester.runpytest("--freshtoken-html=out/report.html", *ARGS)
    result.assert_outcomes(failed=2, passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*freshtoken HTML report: *report.html*"])
    _check_report(pytester.path / "out" / "report.html")


def test_ini_twin_writes_the_report_relative_to_the_ini_file(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ini(pytester, "freshtoken_html = reports/run.html")
    pytester.makepyfile(test_report=TESTS)
    elsewhere = pytester.mkdir("elsewhere")
    monkeypatch.chdir(elsewhere)
    result = pytester.runpytest(str(pytester.path / "test_report.py"))
    result.assert_outcomes(failed=1, passed=1, skipped=1)
    assert not (elsewhere / "reports").exists()
    document = parse((pytester.path / "reports" / "run.html").read_text(encoding="utf-8"))
    assert len(sections(document)) == 3


def test_without_the_option_no_report_is_written(pytester: pytest.Pytester) -> None:
    _ini(pytester)
    pytester.makepyfile(test_report=TESTS)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1, passed=1, skipped=1)
    assert list(pytester.path.rglob("*.html")) == []
    assert "freshtoken HTML report" not in result.stdout.str()


def test_under_xdist_the_controller_writes_what_the_workers_saw(pytester: pytest.Pytester) -> None:
    _ini(pytester)
    pytester.makepyfile(test_report=TESTS)
    result = pytester.runpytest_subprocess("-n", "2", "--freshtoken-html=out/report.html", *ARGS)
    result.assert_outcomes(failed=2, passed=1, skipped=1)
    _check_report(pytester.path / "out" / "report.html")
