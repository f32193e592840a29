"""The official SDK clients as subjects: python-sdk (mcp, in this environment) and typescript-sdk
(@modelcontextprotocol/sdk with Node, installed with npm on first use), each directly with its own
OAuth client provider and through freshtoken's proxy.

What they show is the SDKs' own behaviour, judged from what the fakes saw; every failure through
the proxy is a client bug the README explains. The TypeScript tests need node and npm: without
them they skip, and fail when ``CI`` is set (CI installs what they need).
"""

from __future__ import annotations

import os
import re
import shutil
from importlib import metadata
from pathlib import Path

import pytest

from freshtoken._errors import ConfigError
from freshtoken.scenarios import (
    TYPESCRIPT_SDK_VERSION,
    Scenario,
    ScenarioResult,
    SdkSubject,
    get_subject,
    load_catalogue,
    run_scenario,
)

README = Path(__file__).parents[2] / "README.md"
CATALOGUE = {s.name: s for s in load_catalogue()}
SEED = CATALOGUE["seed-stale-bearer-after-rotation"]
FULL = os.environ.get("FRESHTOKEN_FULL_SCOREBOARD") == "1"

KNOWN_CLIENT_BUGS: dict[str, frozenset[str]] = {
    # Neither SDK initializes a new session after a 404 (BUGS.md #22): through the proxy, the
    # only scenarios they fail.
    "python-sdk via proxy": frozenset(
        {"session-404-reinitialize", "server-restart-drops-sessions"}
    ),
    "typescript-sdk via proxy": frozenset(
        {"session-404-reinitialize", "server-restart-drops-sessions"}
    ),
}
"""Scenarios each SDK fails through the proxy, each explained in the README as a client bug."""


def _need_node() -> None:
    if shutil.which("node") and shutil.which("npm"):
        return
    if os.environ.get("CI"):
        pytest.fail("node and npm are needed in CI for the typescript-sdk subject")
    pytest.skip("node or npm is not installed")


def _subject(name: str, *, via_proxy: bool = False) -> SdkSubject:
    if name == "typescript-sdk":
        _need_node()
    subject = get_subject(name, via_proxy=via_proxy)
    assert isinstance(subject, SdkSubject)
    return subject


def _after(result: ScenarioResult, actor: str, kind: str, **detail: object) -> int:
    """The timeline number of the first ``actor`` ``kind`` event with ``detail``."""
    return next(
        e.seq
        for e in result.timeline.events
        if e.actor == actor
        and e.kind == kind
        and all(e.detail.get(k) == v for k, v in detail.items())
    )


def _grants_after(result: ScenarioResult, seq: int, grant_type: str) -> list[object]:
    return [
        e
        for e in result.timeline.events
        if e.seq > seq
        and e.actor == "as"
        and e.kind == "token.request"
        and e.detail.get("grant_type") == grant_type
    ]


# -- python-sdk ------------------------------------------------------------------------------------


async def test_python_sdk_never_refreshes_after_the_rotation_and_asks_for_a_login() -> None:
    result = await run_scenario(SEED, _subject("python-sdk"))
    assert result.failed
    rotated = _after(result, "as", "tokens.rotated")
    assert rotated > 0
    assert _grants_after(result, rotated, "refresh_token") == []
    assert result.grants == {}
    # On the 401 the SDK went for an interactive login, not its refresh token (python-sdk #1318).
    assert result.timeline.count(actor="client", kind="login.requested") == 1
    failed = {c.name: c.reason for c in result.failures}
    assert "call echo (step 3) failed" in failed["every_call_answered"]
    (sdk,) = result.timeline.select(actor="client", kind="sdk")
    assert sdk.detail == {"package": "mcp", "version": metadata.version("mcp"), "via_proxy": False}


async def test_python_sdk_through_the_proxy_survives_the_rotation() -> None:
    result = await run_scenario(SEED, _subject("python-sdk", via_proxy=True))
    assert result.passed, result.format_failures()
    rotated = _after(result, "as", "tokens.rotated")
    assert len(_grants_after(result, rotated, "refresh_token")) == 1
    assert result.timeline.count(actor="client", kind="login.requested") == 0
    (sdk,) = result.timeline.select(actor="client", kind="sdk")
    assert sdk.detail["via_proxy"] is True


async def test_python_sdk_holds_posts_behind_a_get_whose_headers_are_held_back() -> None:
    scenario = CATALOGUE["get-stream-headers-held-back"]
    direct = await run_scenario(scenario, _subject("python-sdk"))
    assert direct.failed
    assert "call echo (step 4) failed: TimeoutError()" in direct.format_failures()
    # The POST never left the client: the server saw the GET, and no tools/call.
    requests = direct.timeline.select(actor="mcp", kind="request")
    assert [e for e in requests if e.detail.get("http_method") == "GET"]
    assert not [e for e in requests if e.detail.get("rpc_method") == "tools/call"]
    through = await run_scenario(scenario, _subject("python-sdk", via_proxy=True))
    assert through.passed, through.format_failures()


def test_python_sdk_is_judged_as_a_client_directly_and_as_a_proxy_through_it() -> None:
    direct, through = _subject("python-sdk"), _subject("python-sdk", via_proxy=True)
    assert direct.profile.roles == {"client"}
    assert through.profile.roles == {"proxy"}
    assert direct.sdk == "mcp"
    assert direct.sdk_version == metadata.version("mcp")
    assert set(direct.revisions) == {"2025-06-18", "2025-11-25"}


# -- typescript-sdk ------------------------------------------------------------------------------


async def test_typescript_sdk_refreshes_once_per_failing_request() -> None:
    result = await run_scenario(
        CATALOGUE["concurrent-401s-single-refresh"], _subject("typescript-sdk")
    )
    assert result.failed
    # As the fake authorization server saw them: one refresh grant per failing call, and the
    # rotated refresh token presented again (the family is then revoked).
    assert result.token_requests > 1
    assert result.grants["refresh_token"] == result.token_requests
    assert result.timeline.count(actor="as", kind="refresh.reuse") >= 1
    failed = {c.name for c in result.failures}
    assert {"max_token_requests", "no_refresh_reuse"} <= failed
    (sdk,) = result.timeline.select(actor="client", kind="sdk")
    assert sdk.detail["version"] == TYPESCRIPT_SDK_VERSION


async def test_typescript_sdk_through_the_proxy_refreshes_once() -> None:
    result = await run_scenario(
        CATALOGUE["concurrent-401s-single-refresh"], _subject("typescript-sdk", via_proxy=True)
    )
    assert result.passed, result.format_failures()
    assert result.token_requests == 1


async def test_typescript_sdk_sends_a_foreign_host_when_a_step_names_one() -> None:
    # Node's fetch always sends the URL's own Host; the subject sends a step's over node:http.
    result = await run_scenario(
        CATALOGUE["dns-rebinding-refused"], _subject("typescript-sdk", via_proxy=True)
    )
    assert result.passed, result.format_failures()


# -- through the proxy, every scenario that applies ------------------------------------------------


def _through_the_proxy() -> list[tuple[str, Scenario]]:
    # By default the TypeScript subject (half a second a run) and a few for the Python one (its
    # interpreter takes a few seconds to import the SDK on a loaded machine); the whole matrix with
    # FRESHTOKEN_FULL_SCOREBOARD=1, as CI's own step runs it.
    few = {SEED.name, "concurrent-401s-single-refresh", "session-404-reinitialize"}
    return [
        (subject, scenario)
        for subject in ("typescript-sdk", "python-sdk")
        for scenario in CATALOGUE.values()
        if FULL or subject == "typescript-sdk" or scenario.name in few
    ]


@pytest.mark.parametrize(
    ("name", "scenario"),
    _through_the_proxy(),
    ids=[f"{n}-{s.name}" for n, s in _through_the_proxy()],
)
async def test_through_the_proxy_every_scenario_that_applies_passes_but_known_client_bugs(
    name: str, scenario: Scenario
) -> None:
    result = await run_scenario(scenario, _subject(name, via_proxy=True))
    if scenario.revisions == ("2026-07-28",):
        assert result.not_applicable is not None
        return
    assert result.command is not None
    assert result.command.violations == ()
    if scenario.name in KNOWN_CLIENT_BUGS[f"{name} via proxy"]:
        assert result.failed, f"{scenario.name} passes on {name}: drop it from the known bugs"
        return
    assert result.passed, result.format_failures()


def test_every_known_client_bug_is_explained_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Rotation readiness of MCP clients") :]
    section = section[: section.index("\n## ", 1)]
    items = [" ".join(item.split()) for item in section.split("\n- ")[1:]]
    for label, names in KNOWN_CLIENT_BUGS.items():
        sdk = label.split()[0]
        for name in names:
            # An item names the SDKs it is about before its bold title, then the scenarios.
            explained = [
                item
                for item in items
                if sdk in item.split("**")[0] and name in item and re.search(r"#\d+", item)
            ]
            assert explained, f"the README does not explain {name} on {label} as a client bug"


# -- usage errors ----------------------------------------------------------------------------------


def _only_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *programs: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in programs:
        found = shutil.which(program)
        if found is None:
            pytest.skip(f"{program} is not installed")
        (bin_dir / program).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))


def test_without_node_the_typescript_subject_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _only_on_path(monkeypatch, tmp_path)
    with pytest.raises(ConfigError, match=r"node is not installed \(Node.js 18 or newer"):
        get_subject("typescript-sdk")


def test_without_npm_a_first_use_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _only_on_path(monkeypatch, tmp_path, "node")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match=r"npm is not installed; it is needed once"):
        get_subject("typescript-sdk")
    assert not (
        tmp_path / "cache" / "freshtoken" / f"typescript-sdk-{TYPESCRIPT_SDK_VERSION}"
    ).exists()


def test_an_sdk_dir_without_the_sdk_is_a_config_error(tmp_path: Path) -> None:
    _need_node()
    with pytest.raises(ConfigError, match=r"--sdk-dir: .*is not installed there \(npm install"):
        get_subject("typescript-sdk", sdk_dir=tmp_path)


def test_an_sdk_dir_with_the_sdk_is_used_as_it_is(tmp_path: Path) -> None:
    installed = _subject("typescript-sdk")
    sdk_dir = Path(installed.argv[2]).parents[2]  # <dir>/node_modules/@modelcontextprotocol/sdk
    given = get_subject("typescript-sdk", sdk_dir=sdk_dir)
    assert isinstance(given, SdkSubject)
    assert given.argv == installed.argv
    assert given.sdk_version == TYPESCRIPT_SDK_VERSION


def test_first_use_installs_the_pinned_sdk_into_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _need_node()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    notices: list[str] = []
    subject = get_subject("typescript-sdk", notice=notices.append)
    where = tmp_path / "freshtoken" / f"typescript-sdk-{TYPESCRIPT_SDK_VERSION}"
    assert notices == [
        f"installing @modelcontextprotocol/sdk@{TYPESCRIPT_SDK_VERSION} into {where} (first use)"
    ]
    assert isinstance(subject, SdkSubject)
    assert subject.argv[2] == str(where / "node_modules" / "@modelcontextprotocol" / "sdk")
    # Installed once: the next use finds it, and no staging directory is left behind.
    get_subject("typescript-sdk", notice=notices.append)
    assert len(notices) == 1
    assert sorted(p.name for p in where.parent.iterdir() if not p.name.endswith(".lock")) == [
        where.name
    ]
