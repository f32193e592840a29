"""The kill matrix: every catalogue scenario passes on freshtoken's proxy and fails on a subject
whose bug is the scenario's own property; every targeted mutant is killed by the scenarios named
for the behaviour it breaks, and by few others.

A scenario that only ``baked-bearer`` fails (it cannot survive any rotation, so it fails almost
everything) would still pass on a proxy that broke the very property the scenario is named for:
it would test nothing of its own. Each mutant runs the whole catalogue in-process (each reference
client the scenarios declared for it), one test per subject, so the matrix spreads over the test
workers.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from freshtoken._errors import ConfigError
from freshtoken.scenarios import (
    MutantSubject,
    Scenario,
    ScenarioResult,
    Subject,
    buggy_subjects,
    get_subject,
    load_catalogue,
    load_scenario,
    mutant_subjects,
    mutants,
    run_scenario,
    write_json,
)

CATALOGUE = load_catalogue()
NAMES = frozenset(s.name for s in CATALOGUE)
SEED = "seed-stale-bearer-after-rotation"
BAKED = "baked-bearer"
MAX_COLLATERAL = 2
"""Scenarios a targeted mutant may fail beyond those named for the behaviour it breaks."""

REFERENCE_KILLS: Mapping[str, frozenset[str]] = {
    # Cannot survive a rotation: the seed is named for exactly that.
    BAKED: frozenset({SEED}),
    # Reads no auth failure but a 401, and ignores expires_in.
    "refresh-on-401-only": frozenset(
        {
            "auth-failure-200-jsonrpc",
            "auth-failure-first-sse-event",
            "auth-failure-posthog-shape",
            "auth-failure-tool-error",
            "expiry-by-clock-with-expires-in",
        }
    ),
    "no-single-flight": frozenset({"concurrent-401s-single-refresh", "concurrent-expiry-at-once"}),
    # Refreshes and resends on any failure, without end.
    "retry-forever": frozenset(
        {
            "expired-token-400-no-loop",
            "insufficient-scope-403-passes-through",
            "invalid-grant-terminal",
            "persistent-401-retry-once",
            "replayed-refresh-token-revokes-family",
            "server-restart-drops-sessions",
            "session-404-reinitialize",
        }
    ),
    "substring-match": frozenset({"substring-in-result-is-not-auth-failure"}),
    "refresh-on-403": frozenset({"insufficient-scope-403-passes-through", "dns-rebinding-refused"}),
}
"""Each reference subject's bug, as the scenarios named for the behaviour it breaks. A reference
may fail more scenarios than these (as a side effect of its bug); only these count."""


def declared_killers() -> dict[str, set[str]]:
    """Scenario name → the subjects declared to fail it on its own property."""
    killers: dict[str, set[str]] = {name: set() for name in NAMES}
    for subject, names in REFERENCE_KILLS.items():
        for name in names:
            killers.setdefault(name, set()).add(subject)
    for subject in mutant_subjects().values():
        for name in subject.mutant.targets:
            killers.setdefault(name, set()).add(subject.name)
    return killers


def unbitten(killers: Mapping[str, set[str]], seed: str = SEED) -> list[str]:
    """The scenarios no subject fails on their own property: no killer at all, or (but for the
    seed) only ``baked-bearer``."""
    bad = []
    for name, subjects in sorted(killers.items()):
        if not subjects:
            bad.append(f"{name}: no subject is declared to fail it")
        elif name != seed and not subjects - {BAKED}:
            bad.append(f"{name}: only {BAKED} fails it, which fails almost everything")
    return bad


def test_every_scenario_names_its_bug_and_its_property() -> None:
    assert len(CATALOGUE) >= 20
    for scenario in CATALOGUE:
        assert scenario.title, f"{scenario.name} has no title"
        assert scenario.reproduces, f"{scenario.name} does not say what it reproduces"
        assert scenario.property, f"{scenario.name} does not state its property"
        assert "\n" not in scenario.property, f"{scenario.name}: the property is one line"


def test_the_declared_kills_name_real_scenarios_and_subjects() -> None:
    assert set(REFERENCE_KILLS) == set(buggy_subjects())
    for subject, names in REFERENCE_KILLS.items():
        assert names <= NAMES, f"{subject}: unknown scenarios {sorted(names - NAMES)}"
    assert len({m.name for m in mutants()}) == len(mutants())
    for mutant in mutants():
        assert mutant.targets, f"mutant {mutant.name} names no scenario"
        unknown = set(mutant.targets) - NAMES
        assert not unknown, f"mutant {mutant.name}: unknown scenarios {sorted(unknown)}"


def test_every_scenario_is_declared_to_fail_on_a_subject_that_broke_its_property() -> None:
    assert unbitten(declared_killers()) == []


def test_a_scenario_only_baked_bearer_fails_is_refused() -> None:
    killers = {SEED: {BAKED}, "a": {BAKED}, "b": {BAKED, "mutant:x"}, "c": set()}
    assert unbitten(killers) == [
        "a: only baked-bearer fails it, which fails almost everything",
        "c: no subject is declared to fail it",
    ]
    # The seed is the one scenario named for what baked-bearer breaks.
    assert unbitten({SEED: {BAKED}}) == []


@pytest.mark.parametrize("scenario", CATALOGUE, ids=lambda s: s.name)
async def test_scenario_passes_on_the_proxy(scenario: Scenario) -> None:
    result = await run_scenario(scenario, "proxy")
    assert result.passed, result.format_failures()


SUBJECTS = [*REFERENCE_KILLS, *mutant_subjects()]
AT_ONCE = 3
"""Scenarios run side by side for one subject: a subject that hangs waits out several step
deadlines at a time (each run has its own fakes, ports and clock)."""


async def run_catalogue(
    subject: Subject, scenarios: list[Scenario] = CATALOGUE
) -> dict[str, ScenarioResult]:
    gate = asyncio.Semaphore(AT_ONCE)

    async def run(scenario: Scenario) -> ScenarioResult:
        async with gate:
            return await run_scenario(scenario, subject)

    results = await asyncio.gather(*(run(s) for s in scenarios))
    return {r.scenario.name: r for r in results}


@pytest.mark.parametrize("name", SUBJECTS)
async def test_subject_fails_the_scenarios_named_for_its_bug(name: str) -> None:
    subject = get_subject(name)
    declared = {s for s, subjects in declared_killers().items() if name in subjects}
    # A mutant runs the whole catalogue (few others may fail on it); a reference client, whose
    # bug is broad, only the scenarios declared for it.
    mutant = isinstance(subject, MutantSubject)
    results = await run_catalogue(
        subject, CATALOGUE if mutant else [s for s in CATALOGUE if s.name in declared]
    )
    missed = [
        f"{s}: {results[s].not_applicable or 'passes'}"
        for s in sorted(declared)
        if not results[s].failed
    ]
    assert not missed, f"{name} is declared to fail these, on their own property:\n" + "\n".join(
        missed
    )
    if mutant:
        others = sorted(s for s, r in results.items() if r.failed and s not in declared)
        details = "\n".join(
            f"{s}: " + "; ".join(f"{c.name}: {c.reason}" for c in results[s].failures)
            for s in others
        )
        assert len(others) <= MAX_COLLATERAL, (
            f"{name} is not targeted: it also fails {len(others)} other scenarios\n{details}"
        )


async def test_a_burst_cut_short_by_its_deadline_leaves_no_unretrieved_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Failing is a verdict, not a crash: this subject hangs the burst until the step deadline
    # cancels it, which once left a gather holding an error nobody retrieved (asyncio logs it
    # when the gather is collected).
    scenario = next(s for s in CATALOGUE if s.name == "posts-not-blocked-by-get-stream")
    result = await run_scenario(scenario, "mutant:get-stream-blocks-refresh")
    assert [c.name for c in result.failures] == ["every_call_answered", "no_hang"]
    gc.collect()
    assert "never retrieved" not in caplog.text


def test_a_mutant_is_a_proxy_with_one_behaviour_broken() -> None:
    subject = get_subject("mutant:tls-trust-ignored")
    assert isinstance(subject, MutantSubject)
    assert subject.profile.roles == {"proxy"}
    assert "CA given for an HTTPS upstream is ignored" in subject.description
    with pytest.raises(ConfigError, match=r"unknown mutant 'mutant:nope'.*mutant:sse-buffered"):
        get_subject("mutant:nope")
    with pytest.raises(ConfigError, match="or mutant:NAME"):
        get_subject("nope")


def test_the_readme_lists_every_mutant_with_what_it_breaks() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### The kill matrix and the mutation score", 1)[1].split("\n## ", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| `")
    ]
    assert rows == [[f"`{m.name}`", m.breaks, ", ".join(m.targets)] for m in mutants()], (
        "the README's mutant table is out of date"
    )


async def test_the_property_travels_with_the_scenario(tmp_path: Path) -> None:
    seed = next(s for s in CATALOGUE if s.name == SEED)
    result = await run_scenario(seed, "proxy")
    write_json([result], tmp_path / "report.json")
    (entry,) = json.loads((tmp_path / "report.json").read_text())
    assert entry["property"] == seed.property
    saved = tmp_path / "seed.toml"
    saved.write_text(seed.to_toml())
    assert load_scenario(saved).property == seed.property
