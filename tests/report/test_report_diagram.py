"""The diagram model: events to rows, stale bearers, collapsing, SSE groups, pins, text."""

from __future__ import annotations

from freshtoken import ManualClock, Timeline, fingerprint
from freshtoken.scenarios import Diagram, ReportItem, build_diagram, diagram_text, format_diagram
from freshtoken.scenarios._rows import scrub

OLD = "a" * 8
NEW = "b" * 8
REFRESH = "c" * 8


def _seed(timeline: Timeline, clock: ManualClock) -> None:
    timeline.record(
        "as",
        "token.issued",
        token_fingerprint=OLD,
        refresh=REFRESH,
        family="f1",
        grant_type="seed",
        expires_at=clock.time() + 3600,
    )


def _call_through_proxy(
    timeline: Timeline, rid: str, token: str, status: int, *, attempt: int = 1
) -> None:
    if attempt == 1:
        timeline.record("client", "call.start", request_id=rid, tool="echo")
        timeline.record("client", "send", request_id=rid, method="tools/call")
        timeline.record("proxy", "request", request_id=f"px{rid}", method="POST")
    timeline.record(
        "proxy", "upstream.send", request_id=f"px{rid}", token_fingerprint=token, attempt=attempt
    )
    timeline.record(
        "mcp",
        "request",
        request_id=rid,
        token_fingerprint=token,
        http_method="POST",
        rpc_method="tools/call",
        tool="echo",
        session="s1",
    )
    if status == 401:
        timeline.record(
            "mcp", "auth.rejected", request_id=rid, token_fingerprint=token, status=401, style="401"
        )
    timeline.record("mcp", "response", request_id=rid, status=status, mode="json")
    timeline.record("proxy", "upstream.response", request_id=f"px{rid}", status=status)


def _rotation_story() -> Timeline:
    """One call, a rotation, a call that fails with the old token, a refresh, a replay."""
    clock = ManualClock()
    timeline = Timeline(clock)
    _seed(timeline, clock)
    _call_through_proxy(timeline, "1", OLD, 200)
    timeline.record("proxy", "response", request_id="px1", status=200)
    timeline.record("client", "call.result", request_id="1", status=200)
    timeline.record("as", "tokens.rotated", count=1)
    _call_through_proxy(timeline, "2", OLD, 401)
    timeline.record("proxy", "auth.failure", request_id="px2", token_fingerprint=OLD, reason="401")
    timeline.record("proxy", "refresh.start", token_fingerprint=OLD, source="oauth")
    timeline.record("as", "token.request", status=200, grant_type="refresh_token", client_id="c")
    timeline.record(
        "as",
        "token.issued",
        token_fingerprint=NEW,
        refresh="d" * 8,
        family="f1",
        grant_type="refresh_token",
    )
    timeline.record("proxy", "replay", request_id="px2", token_fingerprint=NEW)
    _call_through_proxy(timeline, "2", NEW, 200, attempt=2)
    timeline.record("proxy", "response", request_id="px2", status=200)
    timeline.record("client", "call.result", request_id="2", status=200)
    return timeline


def _rows(diagram: Diagram, **match: object) -> list[int]:
    return [
        i
        for i, row in enumerate(diagram.rows)
        if all(getattr(row, key) == value for key, value in match.items())
    ]


def test_lanes_hops_and_what_each_row_says() -> None:
    diagram = build_diagram(_rotation_story().events)
    assert diagram.lanes == ("client", "proxy", "mcp", "as")
    labels = [(r.kind, r.source, r.target, r.label) for r in diagram.rows]
    # The same hop is recorded at both ends; it is drawn once, from what the server saw.
    assert labels.count(("arrow", "proxy", "mcp", "tools/call echo")) == 2
    assert ("arrow", "client", "proxy", "tools/call echo") in labels
    assert ("arrow", "proxy", "mcp", "replay: tools/call echo") in labels
    assert ("arrow", "proxy", "as", "POST /token refresh_token") in labels
    assert ("arrow", "as", "proxy", "200 new tokens (refresh_token)") in labels
    assert ("span", "", "", "rotation: every access token issued so far is invalid") in labels
    assert ("mark", "proxy", "proxy", "auth failure (401)") in labels
    assert [r.status for r in diagram.rows if r.kind == "arrow" and r.source == "mcp"] == [
        200,
        401,
        200,
    ]
    assert diagram.events == len(_rotation_story().events)


def test_a_bearer_sent_after_the_rotation_is_stale_and_the_new_one_is_not() -> None:
    diagram = build_diagram(_rotation_story().events)
    sends = [r for r in diagram.rows if r.kind == "arrow" and r.target == "mcp"]
    assert [(r.tokens, r.stale) for r in sends] == [
        ((OLD,), ()),  # before the rotation: fresh
        ((OLD,), (OLD,)),  # after it: stale
        ((NEW,), ()),  # the replay with the refreshed token
    ]
    assert diagram.stale == {OLD}
    # Colours follow first appearance: the seeded access token, its refresh token, then NEW.
    assert diagram.tokens[:2] == (OLD, REFRESH)
    assert NEW in diagram.tokens


def test_expiry_by_the_clock_is_drawn_where_it_passed() -> None:
    clock = ManualClock()
    timeline = Timeline(clock)
    timeline.record(
        "as",
        "token.issued",
        token_fingerprint=OLD,
        family="f",
        grant_type="seed",
        expires_at=clock.time() + 60,
    )
    _call_through_proxy(timeline, "1", OLD, 200)
    clock.advance(120)
    _call_through_proxy(timeline, "2", OLD, 401)
    diagram = build_diagram(timeline.events)
    expiry = _rows(diagram, kind="span", tag="expiry")
    assert len(expiry) == 1
    assert diagram.rows[expiry[0]].time == 60
    stale_send = [r for r in diagram.rows if r.kind == "arrow" and r.target == "mcp" and r.stale]
    assert len(stale_send) == 1
    assert stale_send[0].time == 120
    assert expiry[0] < diagram.rows.index(stale_send[0])


def test_a_burst_collapses_but_the_one_refresh_in_it_stays_visible() -> None:
    clock = ManualClock()
    timeline = Timeline(clock)
    _seed(timeline, clock)
    timeline.record("as", "tokens.rotated", count=1)
    for i in range(200):
        _call_through_proxy(timeline, str(i), OLD, 401)
    timeline.record("as", "token.request", status=200, grant_type="refresh_token", client_id="c")
    timeline.record(
        "as",
        "token.issued",
        token_fingerprint=NEW,
        refresh="d" * 8,
        family="f1",
        grant_type="refresh_token",
    )
    for i in range(200):
        _call_through_proxy(timeline, str(i), NEW, 200, attempt=2)
    diagram = build_diagram(timeline.events)
    assert len(diagram.rows) < 20
    rejected = [r for r in diagram.rows if r.label == "tools/call echo" and r.target == "mcp"]
    assert [r.count for r in rejected] == [200]
    replays = [r for r in diagram.rows if r.label == "replay: tools/call echo"]
    assert [r.count for r in replays] == [200]
    refresh = _rows(diagram, label="POST /token refresh_token")
    assert len(refresh) == 1
    assert diagram.rows[refresh[0]].count == 1
    # The refresh sits between the failures and the replays, as it happened.
    assert diagram.rows.index(rejected[0]) < refresh[0] < diagram.rows.index(replays[0])
    assert sum(len(r.seqs) for r in diagram.rows if r.kind != "span") <= diagram.events
    assert "x 200" in format_diagram(diagram)


def test_different_tokens_never_collapse_together_and_few_repeats_stay_apart() -> None:
    timeline = Timeline(ManualClock())
    for i in range(2):
        _call_through_proxy(timeline, str(i), OLD, 200)
    diagram = build_diagram(timeline.events)
    assert all(r.count == 1 for r in diagram.rows)  # two alike calls are shown as two
    timeline = Timeline(ManualClock())
    for i, token in enumerate([OLD, NEW] * 3):
        _call_through_proxy(timeline, str(i), token, 200)
    diagram = build_diagram(timeline.events)
    sends = [r for r in diagram.rows if r.target == "mcp"]
    assert sorted((r.tokens, r.count) for r in sends) == [((OLD,), 3), ((NEW,), 3)]


def test_a_diagram_never_grows_past_its_row_cap() -> None:
    timeline = Timeline(ManualClock())
    # Every call to a different tool: nothing alike to collapse.
    for i in range(400):
        timeline.record(
            "mcp",
            "request",
            request_id=str(i),
            token_fingerprint=OLD,
            rpc_method="tools/call",
            tool=f"t{i}",
        )
    diagram = build_diagram(timeline.events, max_rows=100)
    assert len(diagram.rows) == 101
    assert diagram.omitted == 300
    assert "left out" in diagram.rows[50].label


def test_sse_events_are_grouped_per_stream() -> None:
    timeline = Timeline(ManualClock())
    timeline.record(
        "mcp",
        "request",
        request_id="7",
        token_fingerprint=OLD,
        rpc_method="tools/call",
        tool="stream",
    )
    timeline.record("mcp", "response", request_id="7", status=200, mode="sse")
    for n in range(1, 3):
        timeline.record("mcp", "sse.event", request_id="7", stream=1, event_id=f"1-{n}")
        timeline.record("client", "sse.event", request_id="7", event_id=f"1-{n}")
        timeline.record("mcp", "sse.event", request_id="9", stream=2, event_id=f"2-{n}")
        timeline.record("client", "sse.event", request_id="9", event_id=f"2-{n}")
    timeline.record("proxy", "stream.end", request_id="px1", reason="eof")
    diagram = build_diagram(timeline.events)
    groups = {g.key: g for g in diagram.streams}
    assert set(groups) == {"1", "2"}
    for key, group in groups.items():
        inside = diagram.rows[group.first : group.last + 1]
        assert all(r.stream in (key, "1", "2") for r in inside)
        assert diagram.rows[group.first].stream == key
        assert diagram.rows[group.last].stream == key
        assert group.lanes == ("client", "mcp")
    assert sum(r.count for r in diagram.rows if r.stream == "1") == 4


def test_pins_mark_rows_and_survive_collapsing() -> None:
    timeline = _rotation_story()
    rejected = [e.seq for e in timeline.events if e.kind == "auth.rejected"]
    diagram = build_diagram(timeline.events, {rejected[0]: ["max_auth_rejections"]})
    pinned = [r for r in diagram.rows if r.pins]
    assert [(r.label, r.pins) for r in pinned] == [
        ("bearer rejected (401)", ("max_auth_rejections",))
    ]
    text = format_diagram(diagram)
    [line] = [line for line in text.splitlines() if line.startswith(">>")]
    assert "bearer rejected" in line
    assert "<<< max_auth_rejections" in line


def test_report_item_pins_failed_invariants_to_their_evidence() -> None:
    timeline = _rotation_story()
    timeline.record("client", "call.error", request_id="3", status=401, error="HTTP 401")
    item = ReportItem(
        name="x",
        outcome="failed",
        events=tuple(timeline.events),
        failures=(("every_call_answered", "call 3 failed"), ("max_token_requests", "1 > 0")),
    )
    from freshtoken.scenarios._items import pin_failures

    pins = pin_failures(item.failures, item.events)
    by_kind = {
        next(e.kind for e in item.events if e.seq == seq): names for seq, names in pins.items()
    }
    assert by_kind == {
        "call.error": ("every_call_answered",),
        "token.request": ("max_token_requests",),
    }
    text = diagram_text(ReportItem(**{**item.__dict__, "pins": pins}))
    assert "<<< every_call_answered" in text
    assert "<<< max_token_requests" in text


def test_text_diagram_draws_arrows_between_the_lane_columns() -> None:
    text = format_diagram(build_diagram(_rotation_story().events))
    lines = text.splitlines()
    header = lines[0]
    assert header.split() == ["client", "proxy", "mcp", "auth"]
    [to_as] = [line for line in lines if "POST /token" in line]
    [from_as] = [line for line in lines if "new tokens" in line]
    assert "------>|" in to_as
    assert "|<------" in from_as
    assert any(line.count("=") > 20 and "rotation" in line for line in lines)
    assert f"[{OLD} STALE]" in text
    assert f"[{NEW}]" in text


def test_scrub_hides_credential_shaped_words_and_keeps_names() -> None:
    secret = "Zq3vN9xYk2LmPp8RtW4sD7fGhJ0aBcEe"
    session = "5f0a3fe88cf5028edcc84d69626a0b1c"
    text = scrub(f"failed with {secret} on session {session} in test_survives_rotation_and_expiry")
    assert secret not in text
    assert session not in text
    assert f"#{fingerprint(secret)}" in text
    assert f"#{fingerprint(session)}" in text
    assert "test_survives_rotation_and_expiry" in text
    assert len(scrub("x" * 1000, 50)) == 50
