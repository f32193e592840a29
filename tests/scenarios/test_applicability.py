"""Whom each scenario judges, on which revisions, and what a subject is: a scenario that does not
fit a subject is not applicable, with the reason, never an unreachable failure."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from freshtoken._errors import ConfigError
from freshtoken.scenarios import (
    Applicability,
    CommandSubject,
    Environment,
    Scenario,
    SubjectProfile,
    SubjectSession,
    builtin_catalogue_dir,
    builtin_subjects,
    load_catalogue,
    parse_scenario,
    render_html,
    run_scenario,
)
from freshtoken.scenarios._applicability import fit

README = Path(__file__).parents[2] / "README.md"
CATALOGUE = load_catalogue()
BY_NAME = {s.name: s for s in CATALOGUE}


def test_every_catalogue_file_declares_whom_it_judges_and_its_revisions() -> None:
    paths = sorted(builtin_catalogue_dir().glob("*.toml"))
    assert {path.stem for path in paths} == set(BY_NAME)  # every scenario, so none is skipped
    for path in paths:
        table = tomllib.loads(path.read_text()).get("applicability")
        assert table is not None, f"{path.name} has no [applicability]"
        assert table.get("roles"), f"{path.name} does not say whom it judges"
        assert table.get("revisions"), f"{path.name} does not list its revisions"
        if table["roles"] != ["proxy", "client"]:
            assert table.get("why"), f"{path.name} leaves a role out without saying why"


def test_the_readme_table_is_the_catalogues() -> None:
    text = README.read_text()
    section = text[text.index("### Whom a scenario judges") : text.index("### Subjects")]
    rows = re.findall(
        r"^\| ([a-z0-9-]+) \| ([a-z, ]+) \| ([0-9, -]+) \| ([a-z]*) ?\|$", section, re.M
    )
    table = {name: (roles, revisions, needs) for name, roles, revisions, needs in rows}
    expected = {
        s.name: (
            ", ".join(s.applicability.roles),
            ", ".join(s.revisions),
            ", ".join(s.applicability.needs),
        )
        for s in CATALOGUE
    }
    assert table == expected


@pytest.mark.parametrize(
    ("applicability", "field", "reason"),
    [
        ({"roles": []}, "applicability.roles", "needs at least one of proxy, client"),
        ({"roles": ["server"]}, "applicability.roles[0]", "'proxy' or 'client'"),
        ({"roles": ["proxy", "proxy"]}, "applicability.roles", "lists a value twice"),
        ({"revisions": ["2025-06-18"]}, "applicability.revisions", "must include the setup's"),
        ({"needs": ["time"]}, "applicability.needs[0]", "'clock'"),
        ({"judges": ["proxy"]}, "applicability.judges", "unknown key"),
    ],
)
def test_a_bad_applicability_table_is_one_error(
    applicability: dict[str, object], field: str, reason: str
) -> None:
    data = {"name": "x", "steps": [{"step": "initialize"}], "applicability": applicability}
    with pytest.raises(ConfigError) as caught:
        parse_scenario(data, source="x.toml")
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_a_scenario_built_in_python_is_checked_too() -> None:
    with pytest.raises(ValueError, match="must include the setup's protocol_version"):
        Scenario(
            name="x",
            steps=(BY_NAME["seed-stale-bearer-after-rotation"].steps[0],),
            applicability=Applicability(revisions=("2025-06-18",)),
        )


def test_subjects_say_what_they_are() -> None:
    subjects = builtin_subjects()
    assert subjects["proxy"].profile.roles == {"proxy"}  # type: ignore[attr-defined]
    for name in ("baked-bearer", "refresh-on-403"):
        assert subjects[name].profile.roles == {"proxy", "client"}  # type: ignore[attr-defined]
    direct = CommandSubject(["client"], revisions=("2025-06-18",))
    assert direct.profile.roles == {"client"}
    assert direct.profile.revisions == {"2025-06-18"}
    assert not direct.profile.sees_clock
    assert CommandSubject(["client"], via_proxy=True).profile.roles == {"proxy"}
    assert CommandSubject(["client"], via_proxy=True).profile.sees_clock


def test_why_a_scenario_does_not_apply() -> None:
    client = SubjectProfile.of(["client"], ["2025-11-25"], sees_clock=False, clock_note="no clock")
    assert fit(BY_NAME["insufficient-scope-403-passes-through"], client) == (
        "judges a token-injecting proxy; the subject is a client managing its own tokens "
        "(a client managing its own tokens may answer 403 insufficient_scope with a step-up "
        "authorization)"
    )
    assert fit(BY_NAME["stateless-stream-cut"], client) == (
        "needs MCP revision 2026-07-28; the subject speaks 2025-11-25"
    )
    assert fit(BY_NAME["expiry-by-clock-with-expires-in"], client) == (
        "needs a subject that sees the scenario's clock move; the subject does not (no clock)"
    )
    seed = BY_NAME["seed-stale-bearer-after-rotation"]
    assert fit(seed, client) is seed


BEFORE_2025_11 = SubjectProfile.of(["proxy"], ["2025-06-18"])


@dataclass(frozen=True)
class OldProxy:
    """freshtoken's proxy with a client that speaks only 2025-06-18."""

    name: str = "old-proxy"
    description: str = "the proxy, before 2025-11-25"
    profile: SubjectProfile = BEFORE_2025_11

    def session(self, env: Environment) -> AbstractAsyncContextManager[SubjectSession]:
        return builtin_subjects()["proxy"].session(env)


async def test_a_scenario_runs_on_the_newest_listed_revision_the_subject_speaks() -> None:
    seed = BY_NAME["seed-stale-bearer-after-rotation"]
    assert seed.setup.protocol_version == "2025-11-25"
    result = await run_scenario(seed, OldProxy())
    assert result.passed, result.format_failures()
    assert result.scenario.setup.protocol_version == "2025-06-18"
    stateless = await run_scenario(BY_NAME["stateless-stream-cut"], OldProxy())
    assert stateless.not_applicable == (
        "needs MCP revision 2026-07-28; the subject speaks 2025-06-18"
    )
    assert stateless.outcome == "not applicable"
    assert not stateless.passed
    assert not stateless.failed
    assert len(stateless.timeline) == 0  # nothing ran
    page = render_html([result, stateless])
    assert 'data-outcome="not applicable"' in page
    assert "needs MCP revision 2026-07-28; the subject speaks 2025-06-18" in page


@pytest.mark.parametrize("scenario", CATALOGUE, ids=lambda s: s.name)
async def test_every_listed_revision_passes_on_the_proxy(scenario: Scenario) -> None:
    for revision in scenario.revisions:
        setup = dataclasses.replace(scenario.setup, protocol_version=revision)
        result = await run_scenario(dataclasses.replace(scenario, setup=setup), "proxy")
        assert result.passed, f"{revision}:\n{result.format_failures()}"
