"""The HTML report: structure for passing and failing runs, escaping, secrets, size."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from report_helpers import Element, harvest_secrets, parse, run, sections

from freshtoken import ManualClock, Timeline, fingerprint
from freshtoken.scenarios import (
    ReportItem,
    ScenarioResult,
    load_catalogue,
    render_html,
    run_scenario_sync,
    write_html,
)

SEED = "seed-stale-bearer-after-rotation"


@pytest.fixture(scope="module")
def catalogue_run() -> list[ScenarioResult]:
    return [run_scenario_sync(scenario, "proxy") for scenario in load_catalogue()]


@pytest.fixture(scope="module")
def seed_runs() -> tuple[ScenarioResult, ScenarioResult]:
    return run(SEED, "baked-bearer"), run(SEED, "proxy")


def _lanes(svg: Element) -> list[str]:
    return [g.attrs["data-lane"] for g in svg.find("g", cls="lane")]


def _fills_by_token(root: Element) -> dict[str, set[str]]:
    fills: dict[str, set[str]] = {}
    for chip in root.find("g", cls="tok"):
        [rect] = chip.find("rect")
        fills.setdefault(chip.attrs["data-token"], set()).add(rect.attrs["fill"])
    return fills


def test_a_catalogue_run_gives_one_collapsed_diagram_per_passing_scenario(
    catalogue_run: list[ScenarioResult], tmp_path: Path
) -> None:
    path = write_html(catalogue_run, tmp_path / "report.html", subject="proxy")
    document = parse(path.read_text(encoding="utf-8"))
    items = sections(document)
    assert [s.attrs["data-name"] for s in items] == [r.scenario.name for r in catalogue_run]
    passed = sum(r.passed for r in catalogue_run)
    assert f"{passed} passed" in document.find("p", cls="verdict")[0].all_text()
    assert len(document.find("table", cls="items")[0].find("tr")) == len(catalogue_run) + 1
    for section, result in zip(items, catalogue_run, strict=True):
        [details] = section.find("details")
        assert ("open" in details.attrs) == (not result.passed), result.scenario.name
        [svg] = section.find("svg", cls="diagram")
        lanes = _lanes(svg)
        assert lanes[0] == "client"
        assert "mcp" in lanes
        # The proxy subject puts its own lane between the client and the MCP server.
        assert lanes[:3] == ["client", "proxy", "mcp"]
        rows = svg.find("g", cls="row")
        assert rows, result.scenario.name
        assert sum(len(r.attrs["data-seq"].split()) for r in rows) <= len(result.timeline)


def test_a_failing_baked_bearer_run_is_open_with_its_invariant_pinned(
    seed_runs: tuple[ScenarioResult, ScenarioResult], tmp_path: Path
) -> None:
    failing, passing = seed_runs
    assert not failing.passed
    assert passing.passed
    html = write_html([failing, passing], tmp_path / "report.html").read_text(encoding="utf-8")
    document = parse(html)
    bad, good = sections(document)
    assert "open" in bad.find("details")[0].attrs
    assert "open" not in good.find("details")[0].attrs
    assert [li.attrs["data-check"] for li in bad.find("li")] == ["every_call_answered"]

    [svg] = bad.find("svg", cls="diagram")
    assert _lanes(svg) == ["client", "mcp", "as"]  # no proxy in front of this client
    pinned = [row for row in svg.find("g", cls="row") if "pinned" in row.classes]
    errors = failing.timeline.select(actor="client", kind="call.error")
    assert len(errors) == 2
    assert sorted(int(row.attrs["data-seq"]) for row in pinned) == [e.seq for e in errors]
    assert all(row.attrs["data-pins"] == "every_call_answered" for row in pinned)

    # The seeded bearer, sent after the rotation, is drawn stale; the rotation is a span.
    seeded = failing.timeline.select(actor="as", kind="token.issued")[0].token
    stale_rows = [row for row in svg.find("g", cls="row") if "stale" in row.classes]
    assert stale_rows
    assert {chip.attrs["data-token"] for row in stale_rows for chip in row.find(cls="stale")} == {
        seeded
    }
    [rotation] = [row for row in svg.find("g", cls="row") if "t-rotation" in row.classes]
    assert "span" in rotation.classes
    rotation_seq = int(rotation.attrs["data-seq"])
    assert all(int(row.attrs["data-seq"].split()[0]) > rotation_seq for row in stale_rows)

    # One colour per token, the same wherever the token appears, different between tokens.
    for section in (bad, good):
        fills = _fills_by_token(section)
        assert all(len(colours) == 1 for colours in fills.values())
        assert len({next(iter(c)) for c in fills.values()}) == len(fills)
    assert len(_fills_by_token(good)) >= 4  # seeded pair plus the refreshed pair


def test_names_and_text_from_peers_render_inert(tmp_path: Path) -> None:
    result = run("hostile-names", "proxy")
    hostile = ReportItem(
        name='</summary><script>alert("name")</script>',
        outcome="failed",
        failures=(("<b onclick=alert(1)>check</b>", "<iframe src=//example.invalid>"),),
        subject="<svg onload=alert(6)>",
        output="</pre><script>alert(7)</script>",
    )
    html = write_html([result, hostile], tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert "<iframe" not in html.lower()
    assert "<img" not in html.lower()
    document = parse(html)
    for element in document.walk():
        assert element.tag not in ("script", "iframe", "img", "object", "embed", "foreignobject")
        assert not [a for a in element.attrs if a.startswith("on")], element.tag
    text = document.all_text()
    # The peer's tool name is there, as text.
    assert "<script>alert(4)</script>" in text
    assert "</pre><script>alert(7)</script>" in text
    [csp] = document.find("meta", http_equiv="Content-Security-Policy")
    assert "default-src 'none'" in csp.attrs["content"]
    assert "script-src" not in csp.attrs["content"]


def test_no_raw_token_or_secret_reaches_the_report(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    harvest = harvest_secrets(monkeypatch)
    results = [
        run(SEED, "proxy"),
        run(SEED, "baked-bearer"),
        run("replayed-refresh-token-revokes-family", "proxy"),
        run("sse-cut-resumed-with-last-event-id", "proxy"),
    ]
    monkeypatch.undo()
    issued = sum(r.timeline.count(actor="as", kind="token.issued") for r in results)
    # Each issue is an access and a refresh token; on top: client secrets, sessions, proxy paths.
    assert len(harvest.values) >= 2 * issued + len(results)
    html = write_html(results, tmp_path / "report.html").read_text(encoding="utf-8")
    leaked = [value for value in harvest.values if value in html]
    assert leaked == []
    # The fingerprints are there instead.
    for result in results:
        for event in result.timeline.select(actor="as", kind="token.issued"):
            assert f'data-token="{event.token}"' in html


def test_a_500_call_burst_report_stays_small(tmp_path: Path) -> None:
    result = run("burst-500-after-rotation", "proxy")
    assert result.client_calls == 500
    path = write_html([result], tmp_path / "burst.html")
    size = path.stat().st_size
    assert size < 2_000_000
    html = path.read_text(encoding="utf-8")
    assert re.search(r'<tspan class="n">\u00d7 500</tspan>', html)
    assert len(parse(html).find("svg", cls="diagram")) == 1


def test_a_timeline_that_does_not_collapse_is_cut_to_a_bounded_report(tmp_path: Path) -> None:
    timeline = Timeline(ManualClock())
    for i in range(20_000):
        timeline.record(
            "mcp", "request", request_id=str(i), rpc_method="tools/call", tool=f"tool-{i}"
        )
    item = ReportItem(name="long", outcome="passed", events=tuple(timeline.events))
    path = write_html([item], tmp_path / "long.html")
    assert path.stat().st_size < 2_000_000
    assert "rows left out" in path.read_text(encoding="utf-8")


def test_an_item_without_a_timeline_has_no_diagram() -> None:
    html = render_html([ReportItem(name="test_plain", outcome="passed", duration=0.5)])
    [section] = sections(parse(html))
    assert section.find("svg") == []
    assert "No freshtoken timeline" in section.all_text()


def test_names_are_shown_as_given_and_free_text_is_scrubbed() -> None:
    token = "Zq3vN9xYk2LmPp8RtW4sD7fGhJ0aBcEe"
    item = ReportItem(
        name="tests/test_x.py::TestRotation2025Scenarios::test_refresh",
        outcome="failed",
        failures=(("assertion", f"AssertionError: got {token}"),),
        output=f"E   assert {token!r} == 'x'",
    )
    html = render_html([item])
    assert "TestRotation2025Scenarios" in html
    assert token not in html
    assert f"#{fingerprint(token)}" in html
