"""Verdicts come from what the servers saw: a lying client passes nothing, a claim beyond what the
server saw fails with what it did not see, runner steps that never ran fail, and an access token
recovered by logging in again while a refresh token was held is a re-login."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from freshtoken._setup import PROTOCOL_VERSIONS
from freshtoken.cli import main
from freshtoken.scenarios import (
    AuthorizationControl,
    Call,
    CommandSubject,
    Environment,
    Initialize,
    Invariants,
    Join,
    McpClient,
    ReportItem,
    Scenario,
    Stream,
    SubjectSession,
    load_catalogue,
    run_scenario,
)
from freshtoken.scenarios._client import Exchange
from freshtoken.scenarios._session import ClientSession

HERE = Path(__file__).parent
README = (HERE / "readme_client.py").read_text()
CATALOGUE = {s.name: s for s in load_catalogue()}
SEED = CATALOGUE["seed-stale-bearer-after-rotation"]


def _variant(tmp_path: Path, name: str, *edits: tuple[str, str]) -> list[str]:
    """The README client with ``edits`` (each must apply): a client that cheats one way."""
    text = README
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    return [sys.executable, str(path)]


def test_a_lying_command_passes_no_scenario_and_each_failure_names_what_the_server_did_not_see(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    liar = f"{sys.executable} {HERE / 'lying_client.py'}"
    argv = ["scenarios", "run", "--subject", "command", "--command", liar, "--command-via-proxy"]
    argv += ["--jobs", "4"]  # each run starts the command: four at a time
    argv += [arg for revision in PROTOCOL_VERSIONS for arg in ("--command-revision", revision)]
    report = tmp_path / "report.json"
    assert main([*argv, "--json", str(report)]) == 1
    out = capsys.readouterr().out
    total = len(CATALOGUE)
    assert f"0 passed, {total} failed (of {total})" in out
    for run in json.loads(report.read_text()):
        assert run["outcome"] == "failed", run["scenario"]
        # It followed the protocol to the letter: only what the servers saw can fail it.
        assert run["command"]["status"] == 0
        assert run["command"]["violations"] == []
        reasons = [c["reason"] for c in run["checks"] if not c["passed"]]
        assert any("MCP server" in reason for reason in reasons), (run["scenario"], reasons)


async def test_a_burst_of_8_is_8_calls_the_server_saw(tmp_path: Path) -> None:
    one_call = _variant(
        tmp_path,
        "one_call_burst",
        (
            '                elif kind == "burst":\n',
            '                elif kind == "burst":\n'
            '                    for _ in range(step["n"] - 1):\n'
            '                        await client.report(index, {"ok": True, "status": 200})\n',
        ),
        ('for _ in range(step["n"])', "for _ in range(1)"),
    )
    scenario = CATALOGUE["concurrent-401s-single-refresh"]
    result = await run_scenario(scenario, CommandSubject(one_call, via_proxy=True))
    assert result.command is not None
    assert result.command.violations == ()
    failed = {c.name: c.reason for c in result.failures}
    assert list(failed) == ["every_call_answered"]
    assert (
        "step 3 (burst of 8 echo): 8 calls reported a result, but the MCP server answered only "
        "1 distinct tools/call echo there"
    ) in failed["every_call_answered"]


async def test_a_runner_step_the_command_never_asked_for_fails_the_scenario(
    tmp_path: Path,
) -> None:
    no_faults = _variant(
        tmp_path,
        "no_faults",
        (
            '                    (await runner.post(f"{CONTROL}/step/{index}")).raise_for_status()\n',
            '                    if kind != "fault":\n'
            '                        await runner.post(f"{CONTROL}/step/{index}")\n',
        ),
    )
    result = await run_scenario(SEED, CommandSubject(no_faults, via_proxy=True))
    # Without the rotation every call succeeds; the verdict says the rotation never happened.
    assert [c.name for c in result.failures] == ["steps_performed"]
    assert result.failures[0].reason == (
        "step 2 (fault as rotate) never ran: the client never asked for it"
    )
    assert result.grants == {}


async def test_progress_claimed_beyond_what_the_server_wrote_fails(tmp_path: Path) -> None:
    inflated = _variant(
        tmp_path,
        "inflated",
        ('args = {"count": step["count"], "pace": step["pace"]}', 'args = {"count": 1, "pace": 1}'),
        (
            '"progress": progress}\n        except',
            '"progress": list(range(1, step.get("count", 0) + 1)) or progress}\n        except',
        ),
    )
    scenario = Scenario(name="four-events", steps=(Initialize(), Stream(count=4), Join()))
    result = await run_scenario(scenario, CommandSubject(inflated, via_proxy=True))
    failed = {c.name: c.reason for c in result.failures}
    assert list(failed) == ["sse_in_order"]
    assert (
        "claims 4 progress events; the MCP server wrote 1 on that stream" in failed["sse_in_order"]
    )


# -- refresh, not re-login ---------------------------------------------------------------------


class LoginAgain:
    """A client that answers a 401 with a new interactive login (authorization code), whatever
    refresh token it holds: what a client without a working refresh path does."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.token = env.access_token
        self.http = httpx.AsyncClient()

    async def authorization(self) -> str | None:
        return f"Bearer {self.token}"

    async def should_retry(self, exchange: Exchange, attempt: int, sent: str | None) -> bool:
        if exchange.status != 401 or attempt > 1:
            return False
        env = self.env
        redirect = "http://127.0.0.1/callback"
        approved = await self.http.get(
            env.harness.authorization_server.authorization_endpoint,
            params={"response_type": "code", "client_id": env.client_id, "redirect_uri": redirect},
        )
        code = parse_qs(urlsplit(approved.headers["location"]).query)["code"][0]
        answer = await self.http.post(
            env.token_endpoint,
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect},
            auth=(env.client_id, env.client_secret),
        )
        self.token = answer.json()["access_token"]
        return True


@dataclass(frozen=True)
class LoginAgainSubject:
    name: str = "login-again"
    description: str = "logs in again on every 401"

    @asynccontextmanager
    async def session(self, env: Environment) -> AsyncIterator[SubjectSession]:
        auth = LoginAgain(env)
        try:
            async with McpClient(env.mcp_url, timeline=env.timeline, auth=auth) as client:
                yield ClientSession(client)
        finally:
            await auth.http.aclose()


async def test_logging_in_again_while_a_refresh_token_was_held_is_a_relogin() -> None:
    result = await run_scenario(SEED, LoginAgainSubject())
    assert result.grants == {"authorization_code": 1}
    assert [c.name for c in result.failures] == ["no_relogin"]
    reason = result.failures[0].reason
    assert reason.startswith("re-login: an access token was recovered by an interactive")
    assert "after step 3 while a valid refresh token was held" in reason
    login = result.timeline.select(actor="as", kind="token.request")[0]
    assert ReportItem.from_result(result).pins[login.seq] == ("no_relogin",)


async def test_logging_in_again_after_the_grant_was_revoked_is_no_relogin() -> None:
    scenario = Scenario(
        name="revoked-then-login",
        steps=(
            Initialize(),
            Call(),
            AuthorizationControl("revoke"),
            AuthorizationControl("rotate"),
            Call(tool="whoami"),
        ),
    )
    result = await run_scenario(scenario, LoginAgainSubject())
    assert result.passed, result.format_failures()
    assert result.grants == {"authorization_code": 1}
    assert "no_relogin" in {c.name for c in result.checks}


async def test_no_relogin_is_judged_where_tokens_rotate_unless_told() -> None:
    quiet = Scenario(name="quiet", steps=(Initialize(), Call()))
    assert "no_relogin" not in {c.name for c in (await run_scenario(quiet, "proxy")).checks}
    told = Scenario(
        name="told", steps=(Initialize(), Call()), invariants=Invariants(no_relogin=True)
    )
    assert "no_relogin" in {c.name for c in (await run_scenario(told, "proxy")).checks}
    assert SEED.relogin_judged
    assert CATALOGUE["expiry-by-clock-without-expires-in"].relogin_judged  # by the clock
    assert not CATALOGUE["insufficient-scope-403-passes-through"].relogin_judged
