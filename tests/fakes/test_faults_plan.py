"""The fault-plan model: data in, data out, bad data named precisely, specs apart from counts."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pydantic import BaseModel

from freshtoken import ConfigError
from freshtoken.fakes import (
    ACTION_KINDS,
    ACTION_TYPES,
    AuthFailed200,
    CutStream,
    Delay,
    Fault,
    FaultPlan,
    Match,
    Rotate,
    Status5xx,
    Status400,
    Status401,
)
from freshtoken.fakes._fault_plan import RequestFacts


def test_round_trip_through_json() -> None:
    plan = FaultPlan(
        [
            Fault(
                Match(rpc_method="tools/call", tool="stream", sse_event=2),
                CutStream(mode="reset"),
            ),
            Fault(
                Match(http_method="POST", request_count=3, at_time=10.0),
                AuthFailed200(shape="posthog"),
                times=None,
            ),
            Fault(Match(), Status5xx(status=502), times=2),
        ]
    )
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["faults"][0] == {
        "match": {"rpc_method": "tools/call", "tool": "stream", "sse_event": 2},
        "action": {"kind": "cut-stream", "mode": "reset"},
        "times": 1,
    }
    again = FaultPlan.from_dict(data)
    assert again.to_dict() == plan.to_dict()
    assert list(again) == list(plan)
    assert again == plan


def test_an_action_may_be_written_as_its_bare_kind() -> None:
    (fault,) = FaultPlan.from_dict([{"action": "rotate"}])
    assert fault == Fault(Match(), Rotate())
    assert Fault.from_dict({"action": {"kind": "delay"}}).action == Delay(seconds=1.0)


def test_every_kind_has_a_class_that_builds_with_defaults() -> None:
    assert set(ACTION_TYPES) == ACTION_KINDS
    for kind, cls in ACTION_TYPES.items():
        action = cls()
        assert action.kind == kind
        assert action.to_dict()["kind"] == kind
        assert Fault.from_dict({"action": action.to_dict()}).action == action


def test_reprs_are_short() -> None:
    fault = Fault(Match(tool="echo"), CutStream(mode="reset"), times=2)
    assert repr(fault) == "Fault(Match(tool='echo'), CutStream(mode='reset'), times=2)"
    assert repr(Fault(Match(), Rotate())) == "Fault(Match(), Rotate())"
    assert (
        repr(FaultPlan([Fault(Match(), Status401())])) == "FaultPlan([Fault(Match(), Status401())])"
    )


def test_a_spec_is_immutable_and_reusable_across_plans() -> None:
    fault = Fault(Match(tool="echo"), Status401())
    with pytest.raises(ValueError, match="frozen"):
        fault.times = 3  # type: ignore[misc]
    first, second = FaultPlan(), FaultPlan()
    a = first.add(fault)
    b = second.add(fault)
    facts = RequestFacts("POST", "tools/call", "echo")
    first.on_request(facts)
    assert (a.fired, a.remaining, a.exhausted) == (1, 0, True)
    assert (b.fired, b.remaining, b.exhausted) == (0, 1, False)
    assert second.on_request(facts)[0] == [b]
    assert fault.to_dict()["times"] == 1
    assert a.to_dict() == {**fault.to_dict(), "fired": 1}


def test_the_classes_embed_as_pydantic_field_types() -> None:
    class Step(BaseModel):
        fault: Fault
        plan: FaultPlan = FaultPlan()

    step = Step.model_validate(
        {"fault": {"action": "status-401", "match": {"tool": "x"}}, "plan": [{"action": "rotate"}]}
    )
    assert step.fault == Fault(Match(tool="x"), Status401())
    assert step.plan == FaultPlan([Fault(Match(), Rotate())])
    assert len(step.plan.states) == 1
    kinds = Step.model_json_schema()["$defs"]["Fault"]["properties"]["action"]
    # The JSON schema describes the action as a union tagged by kind.
    assert kinds["discriminator"]["propertyName"] == "kind"
    assert set(kinds["discriminator"]["mapping"]) == ACTION_KINDS


FAULT_PLAN_ERRORS = [
    (
        {"faults": [{"action": "explode"}]},
        "faults[0].action",
        "unknown action kind 'explode'",
    ),
    (
        {"faults": [{"action": {"kind": "status-5xx", "status": 404}}]},
        "faults[0].action.status",
        "Input should be greater than or equal to 500",
    ),
    (
        {"faults": [{"action": {"kind": "status-5xx", "status": 502.5}}]},
        "faults[0].action.status",
        "Input should be a valid integer",
    ),
    (
        {"faults": [{"action": {"kind": "cut-stream", "mode": "sideways"}}]},
        "faults[0].action.mode",
        "Input should be 'close' or 'reset'",
    ),
    (
        {"faults": [{"action": {"kind": "rotate", "extra": 1}}]},
        "faults[0].action.extra",
        "unknown key",
    ),
    ({"faults": [{"action": 5}]}, "faults[0].action", "must be a table with a kind"),
    (
        {"faults": [{"action": "rotate", "match": {"request_count": 0}}]},
        "faults[0].match.request_count",
        "Input should be greater than or equal to 1",
    ),
    (
        {"faults": [{"action": "rotate", "match": {"sse_event": True}}]},
        "faults[0].match.sse_event",
        "Input should be a valid integer",
    ),
    (
        {"faults": [{"action": "rotate", "match": {"at_time": float("inf")}}]},
        "faults[0].match.at_time",
        "Input should be a finite number",
    ),
    (
        {"faults": [{"action": "rotate", "match": {"tool": 7}}]},
        "faults[0].match.tool",
        "Input should be a valid string",
    ),
    (
        {"faults": [{"action": "rotate", "match": {"colour": "red"}}]},
        "faults[0].match.colour",
        "unknown key",
    ),
    (
        {"faults": [{"action": "rotate", "times": 0}]},
        "faults[0].times",
        "Input should be greater than or equal to 1",
    ),
    (
        {"faults": [{"action": "rotate", "times": 1.5}]},
        "faults[0].times",
        "Input should be a valid integer",
    ),
    ({"faults": [{"match": {}}]}, "faults[0].action", "required"),
    ({"faults": "nope"}, "faults", "Input should be a valid list"),
    ({"faultz": []}, "faultz", "unknown key"),
    (
        {"faults": [{"action": {"kind": "delay", "seconds": -1}}]},
        "faults[0].action.seconds",
        "Input should be greater than or equal to 0",
    ),
    (
        {"faults": [{"action": {"kind": "delay", "seconds": float("nan")}}]},
        "faults[0].action.seconds",
        "Input should be a finite number",
    ),
    (
        {"faults": [{"action": {"kind": "delay", "seconds": "5"}}]},
        "faults[0].action.seconds",
        "Input should be a valid number",
    ),
    (
        {"faults": [{"action": {"kind": "auth-failed-200", "shape": "html"}}]},
        "faults[0].action.shape",
        "Input should be 'jsonrpc', 'posthog' or 'tool-error'",
    ),
]


@pytest.mark.parametrize(("data", "field", "reason"), FAULT_PLAN_ERRORS)
def test_bad_data_gives_one_line_naming_the_field(data: Any, field: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        FaultPlan.from_dict(data)
    error = caught.value
    assert (error.source, error.field) == ("fault plan", field)
    assert error.reason is not None
    assert error.reason.startswith(reason)
    assert str(error) == f"fault plan: {field}: {error.reason}"
    assert "\n" not in str(error)


def test_building_a_bad_spec_in_python_raises_the_same_error() -> None:
    with pytest.raises(ConfigError) as caught:
        Status5xx(status=404)
    assert str(caught.value) == "Status5xx: status: Input should be greater than or equal to 500"
    with pytest.raises(ConfigError, match=r"^Match: request_count: "):
        Match(request_count=0)
    with pytest.raises(ConfigError, match=r"^Fault: times: "):
        Fault(Match(), Rotate(), 0)
    with pytest.raises(ConfigError, match=r"^Fault: action: required"):
        Fault(Match())


def test_request_count_times_and_single_terminal() -> None:
    plan = FaultPlan()
    third = plan.add(Fault(Match(tool="echo", request_count=3), Status401(), times=2))
    also = plan.add(Fault(Match(tool="echo", request_count=3), Status400()))
    side = plan.add(Fault(Match(tool="echo", request_count=3), Rotate()))
    facts = RequestFacts("POST", "tools/call", "echo")
    fired = [[f.action.kind for f in plan.on_request(facts)[0]] for _ in range(5)]
    assert fired == [[], [], ["status-401", "rotate"], ["status-401"], ["status-400"]]
    assert (third.fired, also.fired, side.fired) == (2, 1, 1)
    assert [state.fired for state in plan.states] == [2, 1, 1]


def test_stream_faults_are_armed_then_fire_at_their_position() -> None:
    plan = FaultPlan([Fault(Match(tool="stream", sse_event=2), CutStream())])
    firing, armed = plan.on_request(RequestFacts("POST", "tools/call", "stream"))
    assert firing == []
    assert len(armed) == 1
    assert plan.fire_on_stream(armed, 1) == []
    assert plan.fire_on_stream(armed, 2) == armed
    assert plan.fire_on_stream(armed, 2) == []  # times=1: consumed
    assert not plan.on_request(RequestFacts("POST", "tools/call", "echo"))[1]


def test_match_fields_select_requests() -> None:
    facts = RequestFacts("post", "tools/call", "echo", time=100.0)
    assert facts.matches(Fault(Match(http_method="POST", tool="echo"), Rotate()))
    assert not facts.matches(Fault(Match(http_method="GET"), Rotate()))
    assert not facts.matches(Fault(Match(rpc_method="tools/list"), Rotate()))
    assert facts.matches(Fault(Match(at_time=100.0), Rotate()))
    assert not facts.matches(Fault(Match(at_time=100.5), Rotate()))


def test_a_copied_plan_is_independent() -> None:
    class Settings(BaseModel):
        plan: FaultPlan = FaultPlan()

    first, second = Settings(), Settings()
    first.plan.add(Fault(Match(), Rotate()))
    assert (len(first.plan), len(second.plan)) == (1, 0)
    plan = FaultPlan([Fault(Match(tool="echo"), Status401())])
    plan.on_request(RequestFacts("POST", "tools/call", "echo"))
    for copied in (copy.copy(plan), copy.deepcopy(plan), plan.model_copy()):
        assert copied == plan
        assert [s.fired for s in copied.states] == [1]
        copied.add(Fault(Match(), Rotate()))
        copied.states[0].fired = 0
        assert len(plan) == 1
        assert plan.states[0].fired == 1
