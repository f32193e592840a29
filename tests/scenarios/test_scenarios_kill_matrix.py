"""Every catalogue scenario passes on the proxy and fails on at least one buggy reference."""

from __future__ import annotations

import pytest

from freshtoken.scenarios import buggy_subjects, load_catalogue, run_scenario

CATALOGUE = load_catalogue()


def test_catalogue_is_big_enough_and_names_its_bugs() -> None:
    assert len(CATALOGUE) >= 20
    for scenario in CATALOGUE:
        assert scenario.reproduces, f"{scenario.name} does not say what it reproduces"
        assert scenario.title, f"{scenario.name} has no title"


@pytest.mark.parametrize("scenario", CATALOGUE, ids=lambda s: s.name)
async def test_scenario_passes_on_proxy_and_bites_a_buggy_subject(scenario: object) -> None:
    from freshtoken.scenarios import Scenario

    assert isinstance(scenario, Scenario)
    on_proxy = await run_scenario(scenario, "proxy")
    assert on_proxy.passed, on_proxy.format_failures()
    for subject in buggy_subjects():
        result = await run_scenario(scenario, subject)
        if not result.passed:
            return
    pytest.fail(f"{scenario.name}: no buggy reference subject fails it; it tests nothing")
