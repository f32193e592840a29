"""A refresh grant whose answer was lost: sent once more only inside the endpoint's grace window.

The fake AS processes the grant (rotating the refresh token) and drops the connection before
answering (``lose_response``): the source holds a refresh token the endpoint has superseded.
"""

from __future__ import annotations

import pytest

from freshtoken import GrantInDoubtError, InvalidGrantError, ManualClock, Timeline
from freshtoken.fakes import FakeAuthorizationServer, TokenPolicy
from freshtoken.proxy import RefreshTokenSource


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def _source(
    auth: FakeAuthorizationServer, clock: ManualClock, timeline: Timeline, grace: float
) -> RefreshTokenSource:
    pair = auth.issue_tokens()
    return RefreshTokenSource(
        auth.token_endpoint,
        auth.client_id,
        auth.client_secret,
        refresh_token=pair.refresh_token,
        clock=clock,
        timeline=timeline,
        refresh_grace=grace,
    )


async def test_inside_the_grace_window_the_lost_grant_is_sent_once_more(clock: ManualClock) -> None:
    timeline = Timeline(clock)
    async with FakeAuthorizationServer(
        clock=clock, timeline=timeline, policy=TokenPolicy(grace_period=30)
    ) as auth:
        source = await _source(auth, clock, timeline, grace=30)
        auth.fail_next(lose_response=True)
        token = await source.refresh(None)
        await source.aclose()
        assert auth.core.validate_access_token(token) is not None
        seen = auth.token_requests_seen("refresh_token")
        assert [(s.status, s.error) for s in seen] == [(None, "fault"), (200, None)]
        assert seen[0].refresh_token == seen[1].refresh_token  # the same, superseded one
        assert timeline.count(kind="refresh.grace") == 1
        assert timeline.count(actor="proxy", kind="refresh.resend") == 1
        assert timeline.count(kind="refresh.reuse") == 0


async def test_without_a_grace_window_the_lost_grant_is_never_sent_again(
    clock: ManualClock,
) -> None:
    timeline = Timeline(clock)
    async with FakeAuthorizationServer(clock=clock, timeline=timeline) as auth:
        source = await _source(auth, clock, timeline, grace=0)
        auth.fail_next(lose_response=True)
        for _ in range(3):
            with pytest.raises(GrantInDoubtError):
                await source.refresh(None)
        await source.aclose()
        assert len(auth.token_requests_seen()) == 1


async def test_a_grace_the_endpoint_does_not_keep_fails_once_on_the_reuse_and_stops(
    clock: ManualClock,
) -> None:
    """Configured for a grace window the AS does not have: the one resend meets reuse detection
    (the family is revoked, as it was lost anyway) and the source stops there."""
    timeline = Timeline(clock)
    async with FakeAuthorizationServer(clock=clock, timeline=timeline) as auth:
        source = await _source(auth, clock, timeline, grace=30)
        auth.fail_next(lose_response=True)
        with pytest.raises(InvalidGrantError):
            await source.refresh(None)
        with pytest.raises(InvalidGrantError):
            await source.refresh(None)
        await source.aclose()
        assert len(auth.token_requests_seen()) == 2
        assert timeline.count(kind="refresh.reuse") == 1


@pytest.mark.parametrize("grace", [-1, float("nan"), float("inf"), True, "5"])
def test_refresh_grace_is_a_finite_number_of_seconds(grace: object) -> None:
    with pytest.raises(ValueError, match="refresh_grace must be a finite number >= 0"):
        RefreshTokenSource(
            "http://127.0.0.1:1/token",
            "client",
            "secret",
            refresh_token="r",
            refresh_grace=grace,  # type: ignore[arg-type]
        )
