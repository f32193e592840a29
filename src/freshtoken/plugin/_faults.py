"""The fixtures' fault plan: a :class:`FaultPlan` that knows which of its faults must fire.

A fault that never fires usually means a typo (``Match(tool="ehco")``) or a test that no longer
reaches the code it was written for; the test would pass without testing anything. Like respx's
``assert_all_called``, the fixtures fail such a test at teardown. Imported only when a fixture
needs it (it loads the fakes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic import PrivateAttr

from freshtoken.fakes import Fault, FaultPlan, FaultState, TokenFault

__all__ = ["FixtureFaultPlan", "unfired", "unfired_message"]


class FixtureFaultPlan(FaultPlan):
    """What ``freshtoken_faults`` is: a fault plan whose :meth:`add` takes ``must_fire``."""

    _may_stay_unfired: list[FaultState] = PrivateAttr(default_factory=list)

    def add(self, fault: Fault, *, must_fire: bool = True) -> FaultState:
        """Append ``fault``; with ``must_fire=False`` the test passes even if it never fires."""
        state = super().add(fault)
        if not must_fire:
            self._may_stay_unfired.append(state)
        return state

    def must_fire(self, state: FaultState) -> bool:
        """Whether ``state``'s fault fails the test if it never fires."""
        return not any(state is exempt for exempt in self._may_stay_unfired)


def unfired(plan: FaultPlan) -> list[FaultState]:
    """The faults of ``plan`` that never fired and were not exempted."""
    check = plan.must_fire if isinstance(plan, FixtureFaultPlan) else None
    return [state for state in plan.states if state.fired == 0 and (check is None or check(state))]


def unfired_message(states: list[FaultState], token_faults: Sequence[TokenFault] = ()) -> str:
    """What the teardown check says: each MCP-server fault, then each token-endpoint fault
    (queued on a fake authorization server) that never fired."""
    count = len(states) + len(token_faults)
    lines = [
        f"freshtoken: {count} fault(s) added by the test never fired "
        "(a typo in the match, or the test no longer reaches them):"
    ]
    lines += [f"  {json.dumps(state.fault.to_dict(), sort_keys=True)}" for state in states]
    lines += [
        f"  token endpoint: {json.dumps(fault.model_dump(), sort_keys=True)}"
        for fault in token_faults
    ]
    lines.append(
        "Opt out per fault with freshtoken_faults.add(fault, must_fire=False) or "
        "fail_next(..., must_fire=False), or per test with "
        "@pytest.mark.freshtoken(assert_all_faults_fired=False)."
    )
    return "\n".join(lines)
