"""Scenario model, catalogue, runner and subjects."""

from __future__ import annotations

import typing as _typing

from freshtoken.scenarios._applicability import Applicability, SubjectProfile
from freshtoken.scenarios._client import CallOutcome, McpClient
from freshtoken.scenarios._command import CommandSubject, protocol_schema
from freshtoken.scenarios._diagram import Diagram, build_diagram, format_diagram
from freshtoken.scenarios._harness import DEFAULT_TARGET, Harness
from freshtoken.scenarios._html import render_html, write_html
from freshtoken.scenarios._items import ReportItem, diagram_text
from freshtoken.scenarios._loader import (
    builtin_catalogue_dir,
    load_catalogue,
    load_scenario,
    parse_scenario,
)
from freshtoken.scenarios._model import (
    Advance,
    AuthorizationControl,
    Burst,
    Call,
    Disconnect,
    Initialize,
    Invariants,
    Join,
    McpFault,
    OpenGetStream,
    Restart,
    Resume,
    Scenario,
    Setup,
    Step,
    Stream,
    Wait,
)
from freshtoken.scenarios._mutants import Mutant, MutantSubject, mutant_subjects, mutants
from freshtoken.scenarios._report import summary_table, write_json, write_junit
from freshtoken.scenarios._runner import (
    CheckResult,
    ScenarioResult,
    run_scenario,
    run_scenario_sync,
)
from freshtoken.scenarios._scoreboard import (
    SCOREBOARD_JOBS,
    Scoreboard,
    ScoreboardColumn,
    run_scoreboard,
    subject_label,
)
from freshtoken.scenarios._sdk_subjects import (
    SDK_SUBJECTS,
    TYPESCRIPT_SDK_VERSION,
    SdkSubject,
    default_sdk_dir,
    sdk_subject,
)
from freshtoken.scenarios._session import (
    CommandRun,
    Environment,
    Play,
    Subject,
    SubjectSession,
)
from freshtoken.scenarios._strategies import (
    RECOVERABLE_FAULT_KINDS,
    disruptions,
    fault_plans,
    scenarios,
    setups,
    token_policies,
    workloads,
)
from freshtoken.scenarios._subjects import buggy_subjects, builtin_subjects, get_subject

__all__ = [
    "DEFAULT_TARGET",
    "RECOVERABLE_FAULT_KINDS",
    "SCOREBOARD_JOBS",
    "SDK_SUBJECTS",
    "TYPESCRIPT_SDK_VERSION",
    "Advance",
    "Applicability",
    "AuthorizationControl",
    "Burst",
    "Call",
    "CallOutcome",
    "CheckResult",
    "CommandRun",
    "CommandSubject",
    "Diagram",
    "Disconnect",
    "Environment",
    "Harness",
    "Initialize",
    "Invariants",
    "Join",
    "McpClient",
    "McpFault",
    "Mutant",
    "MutantSubject",
    "OpenGetStream",
    "Play",
    "ReportItem",
    "Restart",
    "Resume",
    "RotationMachine",
    "Scenario",
    "ScenarioResult",
    "Scoreboard",
    "ScoreboardColumn",
    "SdkSubject",
    "Setup",
    "Step",
    "Stream",
    "Subject",
    "SubjectProfile",
    "SubjectSession",
    "Wait",
    "buggy_subjects",
    "build_diagram",
    "builtin_catalogue_dir",
    "builtin_subjects",
    "default_sdk_dir",
    "diagram_text",
    "disruptions",
    "fault_plans",
    "format_diagram",
    "get_subject",
    "load_catalogue",
    "load_scenario",
    "mutant_subjects",
    "mutants",
    "parse_scenario",
    "protocol_schema",
    "render_html",
    "run_scenario",
    "run_scenario_sync",
    "run_scoreboard",
    "scenarios",
    "sdk_subject",
    "setups",
    "subject_label",
    "summary_table",
    "token_policies",
    "workloads",
    "write_html",
    "write_json",
    "write_junit",
]


if _typing.TYPE_CHECKING:
    from freshtoken.scenarios._machine import RotationMachine


def __getattr__(name: str) -> _typing.Any:
    # The state machine subclasses Hypothesis's: load it (and Hypothesis) only when asked for.
    if name == "RotationMachine":
        from freshtoken.scenarios._machine import RotationMachine

        globals()[name] = RotationMachine
        return RotationMachine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
