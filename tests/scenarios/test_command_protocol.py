"""The command protocol (version 2): a client written from the README alone, the schema shipped
with the package, the control endpoints, the process group, captured output, and time."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from freshtoken._errors import ConfigError
from freshtoken.scenarios import (
    Advance,
    AuthorizationControl,
    Call,
    CommandSubject,
    Initialize,
    Invariants,
    Join,
    Scenario,
    Setup,
    Stream,
    Wait,
    load_catalogue,
    protocol_schema,
    run_scenario,
    write_json,
    write_junit,
)
from freshtoken.scenarios._command import MAX_OUTPUT, find_libfaketime, steps_document

HERE = Path(__file__).parent
README_CLIENT = [sys.executable, str(HERE / "readme_client.py")]
CATALOGUE = {s.name: s for s in load_catalogue()}
SEED = CATALOGUE["seed-stale-bearer-after-rotation"]


def _script(tmp_path: Path, body: str, name: str = "client.py") -> list[str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def _schema(definition: str) -> Draft202012Validator:
    schema = protocol_schema()
    return Draft202012Validator({"$ref": f"#/$defs/{definition}", "$defs": schema["$defs"]})


# -- the client written from the README ----------------------------------------------------------


@pytest.mark.parametrize("scenario", CATALOGUE.values(), ids=lambda s: s.name)
async def test_readme_client_passes_every_scenario_that_applies_through_the_proxy(
    scenario: Scenario,
) -> None:
    result = await run_scenario(scenario, CommandSubject(README_CLIENT, via_proxy=True))
    if scenario.revisions == ("2026-07-28",):
        # The official SDK does not speak the stateless revision; the command does not claim it.
        assert result.not_applicable is not None
        assert "needs MCP revision 2026-07-28" in result.not_applicable
        return
    assert result.passed, result.format_failures()
    assert result.command is not None
    assert result.command.status == 0
    assert result.command.violations == ()


def test_readme_client_is_short() -> None:
    lines = (HERE / "readme_client.py").read_text().splitlines()
    assert len(lines) <= 150


async def test_readme_client_with_a_baked_bearer_fails_on_what_the_server_refused() -> None:
    result = await run_scenario(SEED, CommandSubject(README_CLIENT))
    assert result.failed
    assert [c.name for c in result.failures] == ["every_call_answered"]
    seeded = result.timeline.select(actor="as", kind="token.issued")[0].token
    rejected = result.timeline.select(actor="mcp", kind="auth.rejected")
    assert rejected
    assert {e.token for e in rejected} == {seeded}
    assert result.timeline.count(actor="proxy") == 0


async def test_client_events_satisfy_a_wait_on_the_client() -> None:
    scenario = Scenario(
        name="progress-seen",
        steps=(
            Initialize(),
            Stream(count=3, pace=1.0),
            Advance(seconds=1.0, when_sleeping=True),
            Wait(event="sse.event", actor="client", count=1, timeout=5.0),
            Join(),
        ),
    )
    result = await run_scenario(scenario, CommandSubject(README_CLIENT, via_proxy=True))
    assert result.passed, result.format_failures()
    assert result.timeline.count(actor="client", kind="sse.event") >= 3


# -- the schema ----------------------------------------------------------------------------------


def test_the_schema_is_valid_and_describes_every_steps_file() -> None:
    Draft202012Validator.check_schema(protocol_schema())
    validator = _schema("stepsFile")
    for scenario in CATALOGUE.values():
        document = steps_document(scenario.name, scenario.setup.protocol_version, scenario.steps)
        errors = [e.message for e in validator.iter_errors(document)]
        assert not errors, (scenario.name, errors)


async def test_the_environment_is_the_one_the_schema_describes(tmp_path: Path) -> None:
    dump = _script(
        tmp_path,
        """
        import json, os
        names = {k: v for k, v in os.environ.items()
                 if k.startswith("FRESHTOKEN_") and k != "FRESHTOKEN_LIBFAKETIME"}
        print(json.dumps(names))
        """,
    )
    described = set(protocol_schema()["$defs"]["environment"]["properties"])
    validator = _schema("environment")
    seen: dict[str, dict[str, str]] = {}
    for label, subject, setup in (
        ("direct", CommandSubject(dump), Setup(tls=True)),
        ("proxy", CommandSubject(dump, via_proxy=True), Setup()),
    ):
        scenario = Scenario(name=f"env-{label}", steps=(Initialize(),), setup=setup)
        result = await run_scenario(scenario, subject)
        assert result.command is not None
        variables = json.loads(result.command.output)
        assert not list(validator.iter_errors(variables)), variables.keys()
        assert set(variables) <= described
        seen[label] = variables
    direct, proxied = seen["direct"], seen["proxy"]
    assert direct["FRESHTOKEN_PROTOCOL"] == "2"
    assert direct["FRESHTOKEN_SCOPE"] == "mcp"
    assert direct["FRESHTOKEN_RESOURCE"] == direct["FRESHTOKEN_UPSTREAM_URL"]
    assert direct["FRESHTOKEN_MCP_URL"] == direct["FRESHTOKEN_UPSTREAM_URL"]
    assert float(direct["FRESHTOKEN_EXPIRES_IN"]) == pytest.approx(3600, abs=1)
    assert "FRESHTOKEN_CA_FILE" in direct
    assert proxied["FRESHTOKEN_VIA_PROXY"] == "1"
    assert proxied["FRESHTOKEN_MCP_URL"] != proxied["FRESHTOKEN_UPSTREAM_URL"]
    assert not {"FRESHTOKEN_ACCESS_TOKEN", "FRESHTOKEN_REFRESH_TOKEN"} & set(proxied)
    # A direct client over TLS gets every variable the schema names.
    assert set(direct) == described


async def test_the_seeded_grant_refreshes_with_the_advertised_scope_and_resource(
    tmp_path: Path,
) -> None:
    refresh = _script(
        tmp_path,
        """
        import json, os, httpx
        env = os.environ
        form = {
            "grant_type": "refresh_token",
            "refresh_token": env["FRESHTOKEN_REFRESH_TOKEN"],
            "scope": env["FRESHTOKEN_SCOPE"],
            "resource": env["FRESHTOKEN_RESOURCE"],
        }
        auth = (env["FRESHTOKEN_CLIENT_ID"], env["FRESHTOKEN_CLIENT_SECRET"])
        answer = httpx.post(env["FRESHTOKEN_TOKEN_ENDPOINT"], data=form, auth=auth)
        metadata = httpx.get(env["FRESHTOKEN_UPSTREAM_URL"].rsplit("/mcp", 1)[0]
                             + "/.well-known/oauth-protected-resource/mcp").json()
        print(json.dumps({"status": answer.status_code, "body": answer.json(),
                          "metadata": metadata}))
        """,
    )
    result = await run_scenario(
        Scenario(name="scope", steps=(Initialize(),)), CommandSubject(refresh)
    )
    assert result.command is not None
    seen = json.loads(result.command.output)
    assert seen["status"] == 200, seen["body"]
    assert seen["body"]["scope"] == "mcp"
    assert seen["metadata"]["scopes_supported"] == ["mcp"]
    assert result.grants == {"refresh_token": 1}


# -- control endpoints ---------------------------------------------------------------------------


async def test_control_requests_out_of_turn_are_refused_and_fail_the_run(tmp_path: Path) -> None:
    rude = _script(
        tmp_path,
        """
        import json, os, httpx
        control = os.environ["FRESHTOKEN_CONTROL_URL"]
        answers = []
        with httpx.Client() as http:
            for path, body in [
                ("/step/3", None),                 # a client step
                ("/step/2", None),                 # before runner step 1
                ("/result/0", {"ok": True}),       # initialize is not a call
                ("/result/3", {"ok": "yes"}),      # not a result body
                ("/result/9", {"ok": True}),       # no such step
                ("/event", {"event": "Bad Name"}),
            ]:
                answer = http.post(control + path, json=body)
                answers.append([path, answer.status_code, answer.json()["error"]])
        print(json.dumps(answers))
        """,
    )
    scenario = Scenario(
        name="rude",
        steps=(Initialize(), AuthorizationControl("rotate"), Advance(seconds=1), Call()),
    )
    result = await run_scenario(scenario, CommandSubject(rude))
    answers = json.loads(result.command.output if result.command else "[]")
    assert [a[1] for a in answers] == [400, 409, 400, 400, 404, 400]
    assert "client's to perform" in answers[0][2]
    assert "step 1 (fault as rotate) must run before step 2" in answers[1][2]
    assert "ok" in answers[3][2]
    assert result.command is not None
    assert len(result.command.violations) == 6
    failed = {c.name: c.reason for c in result.failures}
    assert "must run before step 2" in failed["command"]
    assert (
        "step 1 (fault as rotate) never ran: the client never asked for it"
        in failed["steps_performed"]
    )


async def test_a_runner_step_waits_for_the_client_steps_before_it(tmp_path: Path) -> None:
    hasty = _script(
        tmp_path,
        """
        import os, httpx
        control = os.environ["FRESHTOKEN_CONTROL_URL"]
        answer = httpx.post(control + "/step/2")
        print(answer.status_code, answer.json()["error"])
        """,
    )
    scenario = Scenario(name="hasty", steps=(Initialize(), Call(), AuthorizationControl("rotate")))
    result = await run_scenario(scenario, CommandSubject(hasty))
    assert result.command is not None
    assert result.command.output.startswith(
        "409 /step/2: step 1 (call echo) still owes 1 report(s)"
    )


# -- the process -------------------------------------------------------------------------------


def _group(pgid: int) -> list[str]:
    """The live (not zombie) processes in process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(text.split(" ", 1)[0])
    return members


def _child(output: str) -> int:
    """The pid the command printed as ``child PID``."""
    return int(output.split("child ", 1)[1].split()[0])


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process: checked by pid, so the test does not
    depend on the command leading a process group of its own."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


linux_only = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
SHORT = Scenario(name="short", steps=(Initialize(),), invariants=Invariants(max_duration=1.0))


@linux_only
async def test_a_command_outliving_its_scenario_leaves_no_process_behind(tmp_path: Path) -> None:
    lingering = _script(
        tmp_path,
        """
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(45)"])
        print("started a child", child.pid, flush=True)
        time.sleep(45)
        """,
    )
    result = await run_scenario(SHORT, CommandSubject(lingering, startup_allowance=0))
    assert result.command is not None
    assert result.command.cancelled
    assert _group(result.command.pid) == []
    assert not _alive(_child(result.output.replace("started a child", "child")))
    assert "killed when the run ended" in {c.name: c.reason for c in result.failures}["command"]
    assert "started a child" in result.output
    assert result.duration < 40  # the scenario's end, not the command's 45 s


@linux_only
async def test_a_command_past_its_timeout_is_killed_with_its_group(tmp_path: Path) -> None:
    result = await run_scenario(
        Scenario(name="slow", steps=(Initialize(),)),
        CommandSubject(["sh", "-c", "sleep 45 & echo child $!; sleep 45"], timeout=0.5),
    )
    assert result.command is not None
    assert result.command.timed_out
    assert _group(result.command.pid) == []
    assert not _alive(_child(result.output))


@linux_only
async def test_what_a_command_leaves_running_when_it_exits_is_killed(tmp_path: Path) -> None:
    result = await run_scenario(
        SHORT, CommandSubject(["sh", "-c", "sleep 45 & echo child $!; exit 0"])
    )
    assert result.command is not None
    assert result.command.status == 0
    assert _group(result.command.pid) == []
    assert not _alive(_child(result.output))


async def test_a_command_that_cannot_start_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found on PATH"):
        CommandSubject("no-such-freshtoken-client --flag").check()
    not_executable = tmp_path / "client"
    not_executable.write_text("#!/bin/sh\n")
    with pytest.raises(ConfigError, match="not an executable file"):
        CommandSubject([str(not_executable)]).check()
    # Unchecked, it fails at the first run, as one error rather than one result per scenario.
    with pytest.raises(ConfigError, match="cannot run"):
        await run_scenario(SEED, CommandSubject([str(not_executable)]))


async def test_output_is_captured_into_the_reports_and_its_tail_shown(tmp_path: Path) -> None:
    noisy = _script(
        tmp_path,
        """
        import sys
        print("to stdout")
        print("to stderr \\x1b[31mred\\x1b[0m", file=sys.stderr)
        sys.exit(3)
        """,
    )
    result = await run_scenario(SEED, CommandSubject(noisy))
    assert result.command is not None
    assert result.command.status == 3
    assert "to stdout" in result.output
    assert "to stderr" in result.output
    assert "exited with status 3" in {c.name: c.reason for c in result.failures}["command"]
    assert "output of python" in result.format_failures()
    write_json([result], tmp_path / "report.json")
    data = json.loads((tmp_path / "report.json").read_text())[0]
    assert data["command"]["status"] == 3
    assert "to stderr" in data["command"]["output"]
    write_junit([result], tmp_path / "junit.xml")
    out = ET.parse(tmp_path / "junit.xml").getroot().find("testcase/system-out")
    assert out is not None
    assert out.text is not None
    assert "to stdout" in out.text


async def test_a_flood_of_output_keeps_only_the_newest(tmp_path: Path) -> None:
    flood = _script(
        tmp_path,
        """
        import sys
        for i in range(40000):
            sys.stdout.write(f"line {i:06d} " + "x" * 40 + "\\n")
        print("the end")
        """,
    )
    result = await run_scenario(SHORT, CommandSubject(flood))
    assert result.command is not None
    assert len(result.output) <= MAX_OUTPUT
    assert result.command.dropped > 0
    assert result.output.rstrip().endswith("the end")


# -- time --------------------------------------------------------------------------------------


def _needs_faketime() -> None:
    if find_libfaketime() is None:
        if os.environ.get("CI"):
            pytest.fail("libfaketime is not installed (.ci/run installs it)")
        pytest.skip("libfaketime is not installed")


CLOCK_PROBE = """
    import json, os, time, httpx
    env = os.environ
    before = time.time()
    httpx.post(env["FRESHTOKEN_CONTROL_URL"] + "/step/0").raise_for_status()
    after = time.time()
    detail = {"moved": after - before, "expired": after >= float(env["FRESHTOKEN_EXPIRES_AT"]),
              "clock": env["FRESHTOKEN_CLOCK"]}
    httpx.post(env["FRESHTOKEN_CONTROL_URL"] + "/event", json={"event": "clock", "detail": detail})
    """
EXPIRY = Scenario(name="expiry", steps=(Advance(seconds=120),), setup=Setup(access_ttl=60))


async def test_under_faketime_the_commands_clock_moves_with_the_scenarios(tmp_path: Path) -> None:
    _needs_faketime()
    probe = CommandSubject(_script(tmp_path, CLOCK_PROBE), clock="faketime")
    result = await run_scenario(EXPIRY, probe)
    assert result.passed, result.format_failures()
    seen = result.timeline.select(actor="client", kind="clock")[0].detail
    assert seen["clock"] == "faketime"
    assert 120 <= seen["moved"] < 130
    assert seen["expired"] is True


async def test_on_the_system_clock_clock_scenarios_do_not_apply(tmp_path: Path) -> None:
    probe = _script(tmp_path, CLOCK_PROBE)
    result = await run_scenario(EXPIRY, CommandSubject(probe))
    seen = result.timeline.select(actor="client", kind="clock")[0].detail
    assert seen["clock"] == "system"
    assert seen["moved"] < 100
    assert seen["expired"] is False
    needs_clock = CATALOGUE["expiry-by-clock-with-expires-in"]
    skipped = await run_scenario(needs_clock, CommandSubject(probe))
    assert skipped.not_applicable is not None
    assert "sees the scenario's clock move" in skipped.not_applicable
    assert "--command-clock faketime" in skipped.not_applicable
    # Through the proxy the clock is the proxy's: the scenario applies.
    proxied = await run_scenario(needs_clock, CommandSubject(README_CLIENT, via_proxy=True))
    assert proxied.passed, proxied.format_failures()


async def test_garbage_on_the_control_endpoints_is_refused_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    hostile = _script(
        tmp_path,
        """
        import os, socket, httpx
        control = os.environ["FRESHTOKEN_CONTROL_URL"]
        host, port = control.removeprefix("http://").split(":")
        statuses = []
        with httpx.Client() as http:
            statuses.append(http.post(control + "/result/1", content=b"\\x00\\xff not json").status_code)
            statuses.append(http.post(control + "/result/1", content=b"[" * 100000).status_code)
            statuses.append(http.post(control + "/event", content=b"x" * (2 << 20)).status_code)
            statuses.append(http.get(control + "/step/0").status_code)
            statuses.append(http.post(control + "/step/-1").status_code)
            statuses.append(http.post(control + "/nowhere").status_code)
        for junk in (b"\\x16\\x03\\x01garbage\\r\\n\\r\\n", b"POST /step/0 HTTP/1.1\\r\\nContent-Length: 5\\r\\n\\r\\nab"):
            with socket.create_connection((host, int(port))) as raw:
                raw.sendall(junk)
        print(" ".join(map(str, statuses)))
        """,
    )
    scenario = Scenario(name="hostile", steps=(Initialize(), Call()))
    result = await run_scenario(scenario, CommandSubject(hostile))
    assert result.command is not None
    assert result.command.status == 0, result.output
    statuses = [int(s) for s in result.output.split()]
    assert statuses[:3] == [400, 400, 413]
    assert statuses[3] == 405
    assert statuses[4] in (400, 404)
    assert statuses[5] == 404
    assert result.failed
    assert "never reported" in {c.name: c.reason for c in result.failures}["every_call_answered"]
