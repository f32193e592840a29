from __future__ import annotations

from pathlib import Path

import pytest

from freshtoken import ConfigError
from freshtoken.scenarios import (
    AuthorizationControl,
    Call,
    Initialize,
    McpFault,
    Scenario,
    Setup,
    builtin_catalogue_dir,
    load_catalogue,
    load_scenario,
    parse_scenario,
)

GOOD = """
name = "demo"
title = "t"
reproduces = "x #1"

[setup]
response_mode = "sse"
access_ttl = 30

[[steps]]
step = "initialize"

[[steps]]
step = "fault"
match = { tool = "echo" }
action = { kind = "status-401" }
times = 2

[[steps]]
step = "fault"
target = "as"
action = "rotate"

[[steps]]
step = "call"
tool = "echo"
arguments = { text = "hi" }

[invariants]
max_token_requests = 3
"""


def _write(tmp_path: Path, text: str, name: str = "bad.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loads_every_step_kind_into_frozen_data(tmp_path: Path) -> None:
    scenario = load_scenario(_write(tmp_path, GOOD, "demo.toml"))
    assert scenario.setup == Setup(response_mode="sse", access_ttl=30.0)
    assert scenario.steps[0] == Initialize()
    assert scenario.steps[1] == McpFault(
        {"match": {"tool": "echo"}, "action": {"kind": "status-401"}, "times": 2}
    )
    assert scenario.steps[2] == AuthorizationControl("rotate")
    assert scenario.steps[3] == Call(tool="echo", arguments={"text": "hi"})
    assert scenario.invariants.max_token_requests == 3
    assert scenario.source == str(tmp_path / "demo.toml")


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("name = 'x'\n", "steps", "required"),
        ("steps = []\n", "steps", "needs at least one step"),
        ("[[steps]]\nstep = 'dance'\n", "steps[0].step", "Input should be 'advance', 'burst'"),
        ("[[steps]]\ntool = 'echo'\n", "steps[0].step", "required"),
        ("[[steps]]\nstep = 'call'\ntool = 3\n", "steps[0].tool", "valid string"),
        ("[[steps]]\nstep = 'burst'\nn = 0\n", "steps[0].n", "greater than or equal to 1"),
        ("[[steps]]\nstep = 'burst'\nn = 1.5\n", "steps[0].n", "valid integer"),
        ("[[steps]]\nstep = 'call'\ncolour = 'red'\n", "steps[0].colour", "unknown key"),
        ("[[steps]]\nstep = 'advance'\n", "steps[0].seconds", "required"),
        ("[[steps]]\nstep = 'advance'\nseconds = inf\n", "steps[0].seconds", "finite number"),
        ("[[steps]]\nstep = 'advance'\nseconds = -1\n", "steps[0].seconds", "greater than or"),
        ("[[steps]]\nstep = 'stream'\npace = nan\n", "steps[0].pace", "finite number"),
        ("[[steps]]\nstep = 'join'\nadvance = 0\n", "steps[0].advance", "greater than 0"),
        ("[[steps]]\nstep = 'call'\nbackground = 1\n", "steps[0].background", "valid boolean"),
        ("[[steps]]\nstep = 'call'\nexpect_status = 99\n", "steps[0].expect_status", "100"),
        (
            "[setup]\naccess_ttl = 0\n[[steps]]\nstep = 'initialize'\n",
            "setup.access_ttl",
            "greater than 0",
        ),
        (
            "[setup]\ngrace_period = -1\n[[steps]]\nstep = 'initialize'\n",
            "setup.grace_period",
            "greater than or equal to 0",
        ),
        (
            "[setup]\ntls = 'yes'\n[[steps]]\nstep = 'initialize'\n",
            "setup.tls",
            "valid boolean",
        ),
        (
            "[setup]\nresponse_mode = 'xml'\n[[steps]]\nstep = 'initialize'\n",
            "setup.response_mode",
            "Input should be 'json' or 'sse'",
        ),
        (
            "[setup]\nprotocol_version = '1999-01-01'\n[[steps]]\nstep = 'initialize'\n",
            "setup.protocol_version",
            "'2025-06-18', '2025-11-25' or '2026-07-28'",
        ),
        (
            "[setup]\nstream_auth = 'never'\n[[steps]]\nstep = 'initialize'\n",
            "setup.stream_auth",
            "Input should be",
        ),
        (
            "[setup]\nauth_failure_style = '418'\n[[steps]]\nstep = 'initialize'\n",
            "setup.auth_failure_style",
            "Input should be",
        ),
        (
            "[setup]\ncolour = 'red'\n[[steps]]\nstep = 'initialize'\n",
            "setup.colour",
            "unknown key",
        ),
        (
            "[[steps]]\nstep = 'fault'\naction = { kind = 'explode' }\n",
            "steps[0].action",
            "unknown action kind 'explode'",
        ),
        (
            "[[steps]]\nstep = 'fault'\naction = { kind = 'status-5xx', status = 450.5 }\n",
            "steps[0].action.status",
            "valid integer",
        ),
        (
            "[[steps]]\nstep = 'fault'\naction = 'rotate'\ntimes = 1.5\n",
            "steps[0].times",
            "valid integer",
        ),
        (
            "[[steps]]\nstep = 'fault'\ntarget = 'as'\naction = 'melt'\n",
            "steps[0].action",
            "Input should be 'rotate'",
        ),
        (
            "[[steps]]\nstep = 'fault'\ntarget = 'moon'\naction = 'rotate'\n",
            "steps[0].target",
            "Input should be 'mcp' or 'as'",
        ),
        (
            "[[steps]]\nstep = 'fault'\ntarget = 'as'\naction = 'fail_next'\ndelay = inf\n",
            "steps[0].delay",
            "finite number",
        ),
        (
            "[invariants]\nmax_token_requests = 'two'\n[[steps]]\nstep = 'initialize'\n",
            "invariants.max_token_requests",
            "valid integer",
        ),
        (
            "[invariants]\nmax_duration = 0\n[[steps]]\nstep = 'initialize'\n",
            "invariants.max_duration",
            "greater than 0",
        ),
        ("surprise = 1\n[[steps]]\nstep = 'initialize'\n", "surprise", "unknown key"),
        ("name = 3\n[[steps]]\nstep = 'initialize'\n", "name", "valid string"),
        ("name = ''\n[[steps]]\nstep = 'initialize'\n", "name", "at least 1 character"),
    ],
)
def test_malformed_file_names_file_field_and_reason(
    tmp_path: Path, text: str, field: str, reason: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {field}: "), message
    assert (info.value.source, info.value.field) == (str(path), field)
    assert reason in message
    assert "\n" not in message


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "steps = [\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: \(file\): not valid TOML"):
        load_scenario(path)
    with pytest.raises(ConfigError, match=r"nope\.toml: \(file\): No such file"):
        load_scenario(tmp_path / "nope.toml")


def test_name_defaults_to_file_stem_and_duplicates_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, "[[steps]]\nstep = 'initialize'\n", "mine.toml")
    mine = load_catalogue([tmp_path], builtin=False)
    assert [s.name for s in mine] == ["mine"]
    _write(
        tmp_path,
        "name = 'seed-stale-bearer-after-rotation'\n[[steps]]\nstep = 'initialize'\n",
        "dup.toml",
    )
    with pytest.raises(ConfigError, match="already defined"):
        load_catalogue([tmp_path])


def test_scenarios_are_constructible_from_python() -> None:
    built = Scenario(name="py", steps=(Initialize(), Call()))
    parsed = parse_scenario({"name": "py", "steps": [{"step": "initialize"}, {"step": "call"}]})
    assert parsed.steps == built.steps
    assert parsed.setup == built.setup
    assert parsed.invariants == built.invariants


def test_builtin_catalogue_is_package_data() -> None:
    assert builtin_catalogue_dir().is_dir()
    assert len(list(builtin_catalogue_dir().glob("*.toml"))) >= 20
