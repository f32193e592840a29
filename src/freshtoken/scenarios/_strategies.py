"""Hypothesis strategies that generate token policies, fault plans, workloads and whole scenarios.

Every strategy is a plain function returning a ``SearchStrategy``; they compose (``scenarios()``
takes the others as arguments). Choices are ordered so that Hypothesis shrinks toward the
simplest situation: fewer steps, a plain ``echo`` call, the default token policy, a 401 as the
auth-failure style, the first call as the faulted one, and no faults at all.

Hypothesis is imported when a strategy is built, not with this module: a test suite that uses
the fixtures but no strategy does not pay for loading it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from freshtoken._setup import REFRESHABLE_STYLES, STATELESS_VERSION
from freshtoken.fakes import ACTION_TYPES, CutStream, Fault, FaultPlan, Match, TokenPolicy
from freshtoken.scenarios._model import (
    Advance,
    AuthorizationControl,
    Burst,
    Call,
    Initialize,
    Invariants,
    McpFault,
    Scenario,
    Setup,
    Step,
    Stream,
)

if TYPE_CHECKING:
    from hypothesis import strategies as st

__all__ = [
    "RECOVERABLE_FAULT_KINDS",
    "disruptions",
    "fault_plans",
    "scenarios",
    "setups",
    "token_policies",
    "workloads",
]

RECOVERABLE_FAULT_KINDS = ("status-401", "auth-failed-200", "rotate", "expire")
"""Fault kinds a correct client recovers from with one refresh and one replay."""

_AUTH_FAILED_SHAPES = ("jsonrpc", "posthog", "tool-error")


def token_policies() -> st.SearchStrategy[TokenPolicy]:
    """Policies of the fake authorization server.

    Shrinks toward the default policy: a one-hour access token whose lifetime is reported,
    rotating refresh tokens with reuse detection, and no grace window.
    """
    from hypothesis import strategies as st

    return st.builds(
        TokenPolicy,
        access_ttl=st.sampled_from([3600.0, 60.0, 5.0]),
        report_expires_in=st.sampled_from([True, False]),
        rotate_refresh_tokens=st.sampled_from([True, False]),
        reuse_detection=st.sampled_from([True, False]),
        grace_period=st.sampled_from([0.0, 2.0]),
    )


def setups(
    *,
    policies: st.SearchStrategy[TokenPolicy] | None = None,
    protocol_versions: Sequence[str] = ("2025-11-25", "2025-06-18", "2026-07-28"),
    response_modes: Sequence[str] = ("sse", "json"),
    auth_failure_styles: Sequence[str] = REFRESHABLE_STYLES,
) -> st.SearchStrategy[Setup]:
    """How the fakes are configured. Shrinks toward the first of each choice and the default policy.

    The default auth-failure styles are the ones a client must refresh on; pass others (``"403-scope"``,
    ``"400"``, ``"500"``) to explore pass-through behaviour.
    """
    from hypothesis import strategies as st

    @st.composite
    def build(draw: st.DrawFn) -> Setup:
        policy = draw(policies if policies is not None else token_policies())
        return Setup(
            protocol_version=draw(st.sampled_from(list(protocol_versions))),
            response_mode=draw(st.sampled_from(list(response_modes))),
            access_ttl=policy.access_ttl,
            report_expires_in=policy.report_expires_in,
            rotate_refresh_tokens=policy.rotate_refresh_tokens,
            reuse_detection=policy.reuse_detection,
            grace_period=policy.grace_period,
            auth_failure_style=draw(st.sampled_from(list(auth_failure_styles))),
        )

    return build()


def _faults(kinds: Sequence[str], max_request: int) -> st.SearchStrategy[Fault]:
    from hypothesis import strategies as st

    @st.composite
    def build(draw: st.DrawFn) -> Fault:
        kind = draw(st.sampled_from(list(kinds)))
        if kind == "cut-stream":
            return Fault(
                Match(tool="stream", sse_event=draw(st.integers(1, 2))),
                CutStream(mode=draw(st.sampled_from(["close", "reset"]))),
            )
        params = (
            {"shape": draw(st.sampled_from(_AUTH_FAILED_SHAPES))}
            if kind == "auth-failed-200"
            else {}
        )
        match = Match(rpc_method="tools/call", request_count=draw(st.integers(1, max_request)))
        return Fault(match, ACTION_TYPES[kind](**params))

    return build()


def fault_plans(
    *,
    kinds: Sequence[str] = RECOVERABLE_FAULT_KINDS,
    max_faults: int = 2,
    max_request: int = 4,
) -> st.SearchStrategy[FaultPlan]:
    """Plans for the fake MCP server: one-shot faults on the Nth ``tools/call`` request.

    ``kinds`` are fault-action kinds (``"cut-stream"`` cuts the ``stream`` tool's SSE response after
    one or two events). Shrinks toward an empty plan, then toward fewer faults, the first kind in
    ``kinds`` and the first request.
    """
    from hypothesis import strategies as st

    return st.lists(_faults(kinds, max_request), max_size=max_faults).map(FaultPlan)


def workloads(
    *, min_size: int = 1, max_size: int = 4, streams: bool = True, bursts: bool = True
) -> st.SearchStrategy[tuple[Step, ...]]:
    """What the client does: tool calls, concurrent bursts and progress-streaming calls.

    Shrinks toward a single ``echo`` call; bursts toward two calls, streams toward one event.
    """
    from hypothesis import strategies as st

    calls: list[st.SearchStrategy[Step]] = [
        st.just(Call()),
        st.builds(
            Call,
            tool=st.just("add"),
            arguments=st.fixed_dictionaries({"a": st.integers(0, 9), "b": st.integers(0, 9)}),
        ),
        st.just(Call(tool="whoami", arguments={})),
    ]
    if bursts:
        calls.append(st.builds(Burst, n=st.integers(2, 4)))
    if streams:
        calls.append(st.builds(Stream, count=st.integers(1, 3), pace=st.just(1.0)))
    return st.lists(st.one_of(calls), min_size=min_size, max_size=max_size).map(tuple)


def disruptions() -> st.SearchStrategy[Step]:
    """Things that happen to the client between its calls, each recoverable by one refresh and
    one replay: the authorization server rotates every access token or expires the seeded one,
    or the clock jumps forward (past the access-token lifetime or not).

    Shrinks toward a rotation, the seed bug's trigger.
    """
    from hypothesis import strategies as st

    return st.one_of(
        st.just(AuthorizationControl("rotate")),
        st.just(AuthorizationControl("expire")),
        st.builds(Advance, seconds=st.sampled_from([3600.0, 60.0, 5.0, 1.0])),
    )


_default_setups = setups
_default_fault_plans = fault_plans
_default_workloads = workloads
_default_disruptions = disruptions


def scenarios(
    *,
    setups: st.SearchStrategy[Setup] | None = None,
    fault_plans: st.SearchStrategy[FaultPlan] | None = None,
    workloads: st.SearchStrategy[tuple[Step, ...]] | None = None,
    disruptions: st.SearchStrategy[Step] | None = None,
    max_disruptions: int = 3,
    name: str = "generated",
) -> st.SearchStrategy[Scenario]:
    """Whole scenarios: a setup, the fault plan installed first, an ``initialize``, then the
    workload with disruptions inserted between its steps, checked against the invariants every correct client keeps.

    Every call must end with a result unless the fault plan fails requests (anything but
    ``cut-stream``, which is resumable except in the stateless 2026-07-28 revision): such a fault
    may land on the replay of an already failed call, and passing that second failure back is
    correct. The other
    invariants (every call answered in bounded time, at most one replay per call, no
    refresh-token reuse, a bounded number of token requests) always apply.

    Shrinks toward fewer steps: no faults, no disruptions (or one rotation before the first
    call), a one-call workload and the default setup; the shortest failing scenario is usually
    ``initialize``, one disruption, one call.

    A failing example prints in one line, and again as a scenario file (a Hypothesis note) to
    save into a directory for ``--freshtoken-catalogue-dir`` and keep as a regression test.
    """
    from hypothesis import note
    from hypothesis import strategies as st

    setups_ = setups if setups is not None else _default_setups()
    plans = fault_plans if fault_plans is not None else _default_fault_plans()
    loads = workloads if workloads is not None else _default_workloads()
    events = disruptions if disruptions is not None else _default_disruptions()

    @st.composite
    def build(draw: st.DrawFn) -> Scenario:
        setup = draw(setups_)
        plan = draw(plans)
        load = list(draw(loads))
        inserts = draw(
            st.lists(st.tuples(st.integers(0, len(load)), events), max_size=max_disruptions)
        )
        steps: list[Step] = [McpFault(fault) for fault in plan]
        steps.append(Initialize())
        for position in range(len(load) + 1):
            steps.extend(event for at, event in inserts if at == position)
            if position < len(load):
                steps.append(load[position])
        scenario = Scenario(
            name=name,
            title="generated by freshtoken.scenarios.scenarios()",
            steps=tuple(steps),
            setup=setup,
            invariants=Invariants(
                every_call_answered=_recoverable(setup, plan),
                max_token_requests=_token_budget(steps),
            ),
        )
        # Hypothesis prints notes for the failing example it reports, and only for that one.
        note(
            f"freshtoken: {scenario.name} as a scenario file (save as DIR/{scenario.name}.toml, "
            f"run with --freshtoken-catalogue-dir DIR):\n{scenario.to_toml().rstrip()}"
        )
        return scenario

    return build()


def _recoverable(setup: Setup, plan: FaultPlan) -> bool:
    resumable = setup.protocol_version != STATELESS_VERSION
    return all(resumable and fault.action.kind == "cut-stream" for fault in plan)


def _token_budget(steps: Sequence[Step]) -> int:
    """One token request per thing that can invalidate a token (the seeded token needs none).

    A correct client refreshes at most once per invalidation (single-flight), however many calls
    are in flight; clock jumps may expire a token once per jump.
    """
    invalidations = sum(
        1 for step in steps if isinstance(step, AuthorizationControl | Advance | McpFault)
    )
    return invalidations
