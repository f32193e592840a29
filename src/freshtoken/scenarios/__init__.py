"""Scenario model, catalogue, runner and subjects.

Names load on first use (PEP 562): ``from freshtoken.scenarios import Harness`` imports the
harness and not the runner, the reports, the subjects or Hypothesis, so the pytest fixtures
start without paying for what a test does not use.
"""

from __future__ import annotations

import typing as _typing

from freshtoken._lazy import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from freshtoken.scenarios._applicability import (
        Applicability,
        SubjectProfile,
    )
    from freshtoken.scenarios._client import (
        CallOutcome,
        McpClient,
    )
    from freshtoken.scenarios._command import (
        CommandSubject,
        protocol_schema,
    )
    from freshtoken.scenarios._diagram import (
        Diagram,
        build_diagram,
        format_diagram,
    )
    from freshtoken.scenarios._harness import (
        DEFAULT_TARGET,
        Harness,
    )
    from freshtoken.scenarios._html import (
        render_html,
        write_html,
    )
    from freshtoken.scenarios._items import (
        ReportItem,
        diagram_text,
    )
    from freshtoken.scenarios._loader import (
        builtin_catalogue_dir,
        load_catalogue,
        load_scenario,
        parse_scenario,
    )
    from freshtoken.scenarios._machine import RotationMachine
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
    from freshtoken.scenarios._mutants import (
        Mutant,
        MutantSubject,
        mutant_subjects,
        mutants,
    )
    from freshtoken.scenarios._report import (
        summary_table,
        write_json,
        write_junit,
    )
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
    from freshtoken.scenarios._subjects import (
        buggy_subjects,
        builtin_subjects,
        get_subject,
    )

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

_WHERE: dict[str, str] = {
    "DEFAULT_TARGET": "_harness",
    "RECOVERABLE_FAULT_KINDS": "_strategies",
    "SCOREBOARD_JOBS": "_scoreboard",
    "SDK_SUBJECTS": "_sdk_subjects",
    "TYPESCRIPT_SDK_VERSION": "_sdk_subjects",
    "Advance": "_model",
    "Applicability": "_applicability",
    "AuthorizationControl": "_model",
    "Burst": "_model",
    "Call": "_model",
    "CallOutcome": "_client",
    "CheckResult": "_runner",
    "CommandRun": "_session",
    "CommandSubject": "_command",
    "Diagram": "_diagram",
    "Disconnect": "_model",
    "Environment": "_session",
    "Harness": "_harness",
    "Initialize": "_model",
    "Invariants": "_model",
    "Join": "_model",
    "McpClient": "_client",
    "McpFault": "_model",
    "Mutant": "_mutants",
    "MutantSubject": "_mutants",
    "OpenGetStream": "_model",
    "Play": "_session",
    "ReportItem": "_items",
    "Restart": "_model",
    "Resume": "_model",
    "RotationMachine": "_machine",
    "Scenario": "_model",
    "ScenarioResult": "_runner",
    "Scoreboard": "_scoreboard",
    "ScoreboardColumn": "_scoreboard",
    "SdkSubject": "_sdk_subjects",
    "Setup": "_model",
    "Step": "_model",
    "Stream": "_model",
    "Subject": "_session",
    "SubjectProfile": "_applicability",
    "SubjectSession": "_session",
    "Wait": "_model",
    "buggy_subjects": "_subjects",
    "build_diagram": "_diagram",
    "builtin_catalogue_dir": "_loader",
    "builtin_subjects": "_subjects",
    "default_sdk_dir": "_sdk_subjects",
    "diagram_text": "_items",
    "disruptions": "_strategies",
    "fault_plans": "_strategies",
    "format_diagram": "_diagram",
    "get_subject": "_subjects",
    "load_catalogue": "_loader",
    "load_scenario": "_loader",
    "mutant_subjects": "_mutants",
    "mutants": "_mutants",
    "parse_scenario": "_loader",
    "protocol_schema": "_command",
    "render_html": "_html",
    "run_scenario": "_runner",
    "run_scenario_sync": "_runner",
    "run_scoreboard": "_scoreboard",
    "scenarios": "_strategies",
    "sdk_subject": "_sdk_subjects",
    "setups": "_strategies",
    "subject_label": "_scoreboard",
    "summary_table": "_report",
    "token_policies": "_strategies",
    "workloads": "_strategies",
    "write_html": "_html",
    "write_json": "_report",
    "write_junit": "_report",
}
"""Each public name and the submodule that defines it."""


if not _typing.TYPE_CHECKING:
    # Hidden from type checkers, which see the imports above: a misspelt name stays an error.
    __getattr__, __dir__ = _lazy_exports(__name__, globals(), _WHERE)
