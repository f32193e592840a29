"""The fault-plan model: data in, data out, bad data named precisely."""

from __future__ import annotations

import json
from typing import Any

import pytest

from freshtoken import ConfigError
from freshtoken.fakes import ACTION_KINDS, Action, Fault, FaultPlan, Match
from freshtoken.fakes._faults import RequestFacts


def test_round_trip_through_json() -> None:
    plan = FaultPlan(
        [
            Fault(
                Match(rpc_method="tools/call", tool="stream", sse_event=2),
                Action("cut-stream", mode="reset"),
            ),
            Fault(
                Match(http_method="POST", request_count=3, at_time=10.0),
                Action("auth-failed-200", shape="posthog"),
                times=None,
            ),
            Fault(Match(), Action("status-5xx", status=502), times=2),
        ]
    )
    data = json.loads(json.dumps(plan.to_dict()))
    again = FaultPlan.from_dict(data)
    assert again.to_dict() == plan.to_dict()
    assert [f.action for f in again] == [f.action for f in plan]
    assert Action.from_dict("rotate") == Action("rotate")


def test_every_kind_constructs_with_defaults() -> None:
    for kind in ACTION_KINDS:
        assert Action(kind).to_dict()["kind"] == kind


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"faults": [{"action": "explode"}]}, "faults[0].action.kind"),
        (
            {"faults": [{"action": {"kind": "status-5xx", "status": 404}}]},
            "faults[0].action.status",
        ),
        (
            {"faults": [{"action": {"kind": "cut-stream", "mode": "sideways"}}]},
            "faults[0].action.mode",
        ),
        ({"faults": [{"action": {"kind": "rotate", "extra": 1}}]}, "faults[0].action.extra"),
        (
            {"faults": [{"action": "rotate", "match": {"request_count": 0}}]},
            "faults[0].match.request_count",
        ),
        ({"faults": [{"action": "rotate", "match": {"colour": "red"}}]}, "faults[0].match.colour"),
        ({"faults": [{"action": "rotate", "times": 0}]}, "faults[0].times"),
        ({"faults": [{"match": {}}]}, "faults[0].action"),
        ({"faults": "nope"}, "fault plan.faults"),
        ({"faultz": []}, "fault plan.faultz"),
        ({"faults": [{"action": {"kind": "delay", "seconds": -1}}]}, "faults[0].action.seconds"),
    ],
)
def test_bad_data_names_the_field(data: Any, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        FaultPlan.from_dict(data)
    assert str(caught.value).startswith(where + ":")


def test_request_count_times_and_single_terminal() -> None:
    plan = FaultPlan()
    third = plan.add(Fault(Match(tool="echo", request_count=3), Action("status-401"), times=2))
    also = plan.add(Fault(Match(tool="echo", request_count=3), Action("status-400")))
    side = plan.add(Fault(Match(tool="echo", request_count=3), Action("rotate")))
    facts = RequestFacts("POST", "tools/call", "echo")
    fired = [[f.action.kind for f in plan.on_request(facts)[0]] for _ in range(5)]
    assert fired == [[], [], ["status-401", "rotate"], ["status-401"], ["status-400"]]
    assert (third.fired, also.fired, side.fired) == (2, 1, 1)


def test_stream_faults_are_armed_then_fire_at_their_position() -> None:
    plan = FaultPlan([Fault(Match(tool="stream", sse_event=2), Action("cut-stream"))])
    firing, armed = plan.on_request(RequestFacts("POST", "tools/call", "stream"))
    assert firing == []
    assert len(armed) == 1
    assert plan.fire_on_stream(armed, 1) == []
    assert plan.fire_on_stream(armed, 2) == armed
    assert plan.fire_on_stream(armed, 2) == []  # times=1: consumed
    assert not plan.on_request(RequestFacts("POST", "tools/call", "echo"))[1]
