from __future__ import annotations

import asyncio

from freshtoken.scenarios import (
    AuthorizationControl,
    Call,
    Initialize,
    Invariants,
    Join,
    Scenario,
    Stream,
    load_catalogue,
    run_scenario,
    run_scenario_sync,
)

SEED = next(s for s in load_catalogue() if s.name == "seed-stale-bearer-after-rotation")


async def test_seed_fails_on_baked_bearer_and_the_timeline_shows_the_stale_token() -> None:
    result = await run_scenario(SEED, "baked-bearer")
    assert not result.passed
    assert [c.name for c in result.failures] == ["every_call_answered"]
    timeline = result.timeline
    rotated = timeline.select(actor="as", kind="tokens.rotated")[0].seq
    sent = [e.token for e in timeline.select(actor="mcp", kind="request")]
    before = {e.token for e in timeline.select(actor="mcp", kind="request") if e.seq < rotated}
    after = timeline.select(actor="mcp", kind="request", since=rotated)
    assert after
    assert all(e.token in before for e in after), sent
    rejected = timeline.select(actor="mcp", kind="auth.rejected", since=rotated)
    assert len(rejected) == 2
    assert {e.token for e in rejected} <= before
    stale = next(iter(before))
    lines = result.format_failures().splitlines()
    assert any("auth.rejected" in line and f"tok={stale}" in line for line in lines)


async def test_seed_passes_on_proxy_with_one_refresh_and_new_token_upstream() -> None:
    result = await run_scenario(SEED, "proxy")
    assert result.passed, result.format_failures()
    assert result.token_requests == 1
    rotated = result.timeline.select(actor="as", kind="tokens.rotated")[0].seq
    calls = [
        e
        for e in result.timeline.select(actor="mcp", kind="request", since=rotated)
        if e.detail["rpc_method"] == "tools/call"
    ]
    # The first call after the rotation goes out with the stale bearer, is refused, and is
    # replayed once with the refreshed one; the last call uses the refreshed one directly.
    stale, fresh = calls[0].token, calls[1].token
    assert [e.token for e in calls] == [stale, fresh, fresh]
    assert stale != fresh
    assert calls[0].request_id == calls[1].request_id != calls[2].request_id
    assert result.timeline.count(actor="proxy", kind="replay") == 1
    assert result.grants == {"refresh_token": 1}


def test_python_built_scenario_runs_from_sync_code() -> None:
    scenario = Scenario(
        name="py-stream",
        steps=(
            Initialize(),
            AuthorizationControl("rotate"),
            Stream(count=3, pace=2.0),
            Join(advance=2.0),
            Call(tool="add", arguments={"a": 1, "b": 2}),
        ),
        invariants=Invariants(max_token_requests=2),
    )
    result = run_scenario_sync(scenario, "proxy")
    assert result.passed, result.format_failures()
    assert result.client_calls == 2
    assert {c.name for c in result.checks} >= {"sse_in_order", "max_token_requests", "no_hang"}


async def test_retry_forever_is_caught_by_the_one_replay_invariant() -> None:
    scenario = next(s for s in load_catalogue() if s.name == "persistent-401-retry-once")
    result = await run_scenario(scenario, "retry-forever")
    failed = {c.name for c in result.failures}
    assert "max_upstream_sends_per_call" in failed
    assert result.duration < scenario.invariants.max_duration


async def test_no_single_flight_trips_reuse_detection() -> None:
    scenario = next(s for s in load_catalogue() if s.name == "concurrent-401s-single-refresh")
    result = await run_scenario(scenario, "no-single-flight")
    assert "no_refresh_reuse" in {c.name for c in result.failures}
    assert result.timeline.count(actor="as", kind="family.revoked") >= 1


async def test_a_hanging_wait_is_bounded_and_reported() -> None:
    from freshtoken.scenarios import Wait

    scenario = Scenario(name="hang", steps=(Initialize(), Wait(event="never", timeout=0.2)))
    result = await asyncio.wait_for(run_scenario(scenario, "proxy"), 10)
    assert [c.name for c in result.failures] == ["no_hang"]
    assert "never" in result.failures[0].reason


async def test_a_known_expiry_is_refreshed_before_the_expired_token_is_sent() -> None:
    scenario = next(s for s in load_catalogue() if s.name == "expiry-by-clock-with-expires-in")
    proactive = await run_scenario(scenario, "proxy")
    assert proactive.passed, proactive.format_failures()
    assert proactive.timeline.count(actor="mcp", kind="auth.rejected") == 0

    reactive = await run_scenario(scenario, "refresh-on-401-only")
    assert [c.name for c in reactive.failures] == ["max_auth_rejections"]
    assert "rejected 1 bearer(s)" in reactive.failures[0].reason
