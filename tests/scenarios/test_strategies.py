from __future__ import annotations

import os
import tomllib

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from freshtoken.fakes import FaultPlan, TokenPolicy
from freshtoken.scenarios import (
    disruptions,
    fault_plans,
    load_scenario,
    parse_scenario,
    scenarios,
    setups,
    token_policies,
    workloads,
)
from freshtoken.scenarios._model import (
    AuthorizationControl,
    Burst,
    Call,
    Initialize,
    McpFault,
    Scenario,
    Setup,
    Stream,
    step_to_json,
)
from freshtoken.scenarios._runner import run_scenario_sync

settings.register_profile(
    "ci", max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "fast", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PROFILE = settings.get_profile(os.environ.get("FRESHTOKEN_HYPOTHESIS_PROFILE", "fast"))

SHRINK = settings(database=None, derandomize=True, deadline=None, max_examples=300)


def minimal(strategy: st.SearchStrategy[object], condition: object = lambda _: True) -> object:
    return find(strategy, condition, settings=SHRINK)  # type: ignore[arg-type]


def test_strategies_generate_the_model_types() -> None:
    assert isinstance(minimal(token_policies()), TokenPolicy)
    assert isinstance(minimal(setups()), Setup)
    assert isinstance(minimal(fault_plans()), FaultPlan)
    assert isinstance(minimal(scenarios()), Scenario)


def test_simplest_examples_are_the_defaults() -> None:
    assert minimal(token_policies()) == TokenPolicy()
    assert minimal(setups()) == Setup()
    assert len(minimal(fault_plans())) == 0  # type: ignore[arg-type]
    assert minimal(workloads()) == (Call(),)
    assert minimal(disruptions()) == AuthorizationControl("rotate")
    simplest = minimal(scenarios())
    assert isinstance(simplest, Scenario)
    assert simplest.steps == (Initialize(), Call())


def test_shrinks_toward_small_steps() -> None:
    burst = minimal(workloads(), lambda w: any(isinstance(s, Burst) for s in w))
    assert burst == (Burst(n=2),)
    stream = minimal(workloads(), lambda w: any(isinstance(s, Stream) for s in w))
    assert stream == (Stream(count=1, pace=1.0),)
    plan = minimal(fault_plans(), lambda p: len(p) > 0)
    assert isinstance(plan, FaultPlan)
    assert plan.to_dict() == {
        "faults": [
            {
                "match": {"rpc_method": "tools/call", "request_count": 1},
                "action": {"kind": "status-401"},
                "times": 1,
            }
        ]
    }


def test_strategies_compose() -> None:
    only_stateless = setups(protocol_versions=["2026-07-28"], response_modes=["sse"])
    strategy = scenarios(
        setups=only_stateless,
        fault_plans=st.just(FaultPlan()),
        workloads=workloads(streams=False, bursts=False),
        disruptions=st.just(AuthorizationControl("expire")),
    )
    example = minimal(strategy, lambda s: len(s.steps) >= 4)  # type: ignore[attr-defined]
    assert isinstance(example, Scenario)
    assert example.setup.protocol_version == "2026-07-28"
    assert all(isinstance(s, Initialize | Call | AuthorizationControl) for s in example.steps)


@given(scenarios())
def test_generated_scenarios_round_trip_through_the_file_and_fault_plan_formats(
    scenario: Scenario,
) -> None:
    faults = [step.fault for step in scenario.steps if isinstance(step, McpFault)]
    wire = [fault.to_dict() for fault in faults]
    assert list(FaultPlan.from_dict(wire)) == faults
    as_file = {"name": scenario.name, "steps": [step_to_json(step) for step in scenario.steps]}
    assert parse_scenario(as_file).steps == scenario.steps
    stateless = scenario.setup.protocol_version == "2026-07-28"
    failing = [f for f in faults if stateless or f.action.kind != "cut-stream"]
    assert scenario.invariants.every_call_answered is (not failing)
    assert scenario.invariants.max_token_requests is not None


@PROFILE
@given(scenarios())
def test_generated_scenarios_never_break_the_proxys_invariants(scenario: Scenario) -> None:
    result = run_scenario_sync(scenario, "proxy")
    assert result.passed, f"{result.format_failures()}\n{scenario!r}"


def test_hypothesis_finds_and_shrinks_the_seed_bug_on_baked_bearer() -> None:
    def breaks(scenario: Scenario) -> bool:
        return not run_scenario_sync(scenario, "baked-bearer").passed

    shrunk = find(
        scenarios(),
        breaks,
        settings=settings(database=None, derandomize=True, deadline=None, max_examples=200),
    )
    assert len(shrunk.steps) <= 3
    assert shrunk.steps == (Initialize(), AuthorizationControl("rotate"), Call())
    result = run_scenario_sync(shrunk, "baked-bearer")
    failed = {check.name for check in result.failures}
    assert "every_call_answered" in failed
    # The stale bearer: the call after the rotation resent the token the client was built with.
    seeded = result.timeline.select(actor="as", kind="token.issued")[0].token
    rotated = result.timeline.select(actor="as", kind="tokens.rotated")[0].seq
    sends = [e for e in result.timeline.select(actor="client", kind="send") if e.seq > rotated]
    assert sends
    assert all(e.token == seeded for e in sends)
    assert run_scenario_sync(shrunk, "proxy").passed


@pytest.mark.parametrize("kind", ["status-401", "auth-failed-200", "rotate", "expire"])
def test_each_recoverable_fault_kind_is_recovered_by_the_proxy(kind: str) -> None:
    scenario = minimal(
        scenarios(fault_plans=fault_plans(kinds=[kind], max_faults=1)),
        lambda s: any(isinstance(step, McpFault) for step in s.steps),  # type: ignore[attr-defined]
    )
    assert isinstance(scenario, Scenario)
    result = run_scenario_sync(scenario, "proxy")
    assert result.passed, result.format_failures()
    assert result.token_requests == 1


@settings(max_examples=15, deadline=None, database=None)
@given(
    scenarios(
        fault_plans=fault_plans(kinds=["cut-stream"], max_faults=1).filter(lambda p: len(p) > 0),
        workloads=workloads(max_size=2).filter(lambda w: any(isinstance(s, Stream) for s in w)),
    )
)
def test_cut_streams_are_resumed_through_the_proxy(scenario: Scenario) -> None:
    assert scenario.invariants.every_call_answered is (
        scenario.setup.protocol_version != "2026-07-28"
    )
    result = run_scenario_sync(scenario, "proxy")
    assert result.passed, f"{result.format_failures()}\n{scenario!r}"


@settings(max_examples=60, deadline=None, database=None)
@given(scenarios())
def test_generated_scenarios_round_trip_through_a_scenario_file(scenario: Scenario) -> None:
    again = parse_scenario(tomllib.loads(scenario.to_toml()))
    assert (again.name, again.title, again.steps) == (scenario.name, scenario.title, scenario.steps)
    assert (again.setup, again.invariants) == (scenario.setup, scenario.invariants)


def test_a_failing_example_prints_short_and_as_a_scenario_file(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        """
        from hypothesis import given, settings
        from freshtoken.scenarios import AuthorizationControl, scenarios

        @settings(database=None, derandomize=True, max_examples=200)
        @given(scenarios())
        def test_never_rotates(scenario):
            assert not any(isinstance(step, AuthorizationControl) for step in scenario.steps)
        """
    )
    result = pytester.runpytest("-p", "no:asyncio")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*freshtoken: generated as a scenario file (save as DIR/generated.toml, run with "
            "--freshtoken-catalogue-dir DIR):",
            "*scenario=<Scenario 'generated': initialize · as rotate · call echo>,",
        ]
    )
    # The note's lines, as pytest prints them under the failure ("E       " in front).
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "as a scenario file" in line) + 1
    end = next(i for i, line in enumerate(lines) if "Failing test case" in line)
    toml = "\n".join(line[len("E       ") :] for line in lines[start:end])
    # Hypothesis shows the example in one line, not the scenario's full repr.
    example = "\n".join(lines[end : end + 4])
    assert "Setup(" not in example
    assert "Invariants(" not in example
    written = pytester.path / "my-scenarios" / "generated.toml"
    written.parent.mkdir()
    written.write_text(toml)
    scenario = load_scenario(written)
    assert scenario.steps == (Initialize(), AuthorizationControl("rotate"), Call())
