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
        ("name = 'x'\n", "steps", "non-empty array"),
        ("[[steps]]\nstep = 'dance'\n", "steps[0].step", "unknown step 'dance'"),
        ("[[steps]]\nstep = 'call'\ntool = 3\n", "steps[0].tool", "must be a string"),
        ("[[steps]]\nstep = 'burst'\nn = 0\n", "steps[0].n", "must be > 0"),
        ("[[steps]]\nstep = 'call'\ncolour = 'red'\n", "steps[0].colour", "unknown key"),
        ("[[steps]]\nstep = 'advance'\n", "steps[0].seconds", "missing"),
        (
            "[setup]\nresponse_mode = 'xml'\n[[steps]]\nstep = 'initialize'\n",
            "setup.response_mode",
            "must be one of",
        ),
        (
            "[setup]\nprotocol_version = '1999-01-01'\n[[steps]]\nstep = 'initialize'\n",
            "setup.protocol_version",
            "must be one of",
        ),
        (
            "[setup]\nstream_auth = 'never'\n[[steps]]\nstep = 'initialize'\n",
            "setup.stream_auth",
            "must be one of",
        ),
        (
            "[setup]\nauth_failure_style = '418'\n[[steps]]\nstep = 'initialize'\n",
            "setup.auth_failure_style",
            "must be one of",
        ),
        (
            "[[steps]]\nstep = 'fault'\naction = { kind = 'explode' }\n",
            "steps[0]",
            "unknown action 'explode'",
        ),
        (
            "[[steps]]\nstep = 'fault'\ntarget = 'as'\naction = 'melt'\n",
            "steps[0].action",
            "must be one of",
        ),
        (
            "[invariants]\nmax_token_requests = 'two'\n[[steps]]\nstep = 'initialize'\n",
            "invariants.max_token_requests",
            "must be int",
        ),
        ("surprise = 1\n[[steps]]\nstep = 'initialize'\n", "surprise", "unknown key"),
    ],
)
def test_malformed_file_names_file_field_and_reason(
    tmp_path: Path, text: str, field: str, reason: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {field}"), message
    assert reason in message
    assert "\n" not in message


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "steps = [\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        load_scenario(path)
    with pytest.raises(ConfigError, match="cannot read"):
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
