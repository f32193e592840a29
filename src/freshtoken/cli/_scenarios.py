"""``freshtoken scenarios list | show NAME | run [NAMES...]``."""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import dataclasses
import logging
import sys
from pathlib import Path
from typing import TextIO

from freshtoken._errors import ConfigError
from freshtoken._setup import PROTOCOL_VERSIONS
from freshtoken.scenarios import (
    SCOREBOARD_JOBS,
    SDK_SUBJECTS,
    Scenario,
    ScenarioResult,
    Subject,
    builtin_subjects,
    diagram_text,
    get_subject,
    load_catalogue,
    run_scenario,
    run_scoreboard,
    summary_table,
    write_html,
    write_json,
    write_junit,
)

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``freshtoken scenarios``."""
    parser = subparsers.add_parser(
        "scenarios",
        help="list, show and run the token-rotation scenario catalogue",
        description="Run named token-rotation scenarios against a subject on embedded fakes.",
    )
    parser.set_defaults(func=_no_action, parser=parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    def catalogue_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--catalogue",
            action="append",
            default=[],
            metavar="DIR",
            help="also load *.toml scenarios from DIR (repeatable)",
        )

    listing = actions.add_parser("list", help="list the scenarios")
    catalogue_option(listing)
    listing.set_defaults(func=_list)

    show = actions.add_parser("show", help="print one scenario file")
    show.add_argument("name")
    show.add_argument(
        "--diagram",
        action="store_true",
        help="also run it once (against --subject) and draw its sequence diagram",
    )
    show.add_argument(
        "--subject",
        default="proxy",
        metavar="S",
        help="the subject --diagram runs it against (default: proxy)",
    )
    catalogue_option(show)
    show.set_defaults(func=_show)

    run = actions.add_parser("run", help="run scenarios (default: all) against a subject")
    run.add_argument("names", nargs="*", metavar="NAME")
    catalogue_option(run)
    subjects = [*builtin_subjects(), "command", *SDK_SUBJECTS]
    run.add_argument(
        "--subject",
        default="proxy",
        metavar="S",
        help=f"the subject under test: {', '.join(subjects)}, or mutant:NAME (default: proxy)",
    )
    run.add_argument("--command", metavar="CMD", help="the client command for --subject command")
    run.add_argument(
        "--via-proxy",
        "--command-via-proxy",
        dest="via_proxy",
        action="store_true",
        help="give a client subject (command, python-sdk, typescript-sdk) freshtoken's proxy's "
        "URL instead of the MCP server's, and no credentials",
    )
    _sdk_dir_option(run)
    run.add_argument(
        "--command-revision",
        action="append",
        choices=PROTOCOL_VERSIONS,
        metavar="REV",
        help="an MCP revision the command speaks (repeatable; default: 2025-06-18 and 2025-11-25)",
    )
    run.add_argument(
        "--command-clock",
        choices=("system", "faketime", "auto"),
        default="system",
        help="system (default): the command gets the token's expiry, and scenarios that need "
        "it to see the clock move do not apply; faketime: run it under libfaketime so its "
        "wall clock follows the scenario's (auto: when installed)",
    )
    run.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show log lines and the command's output as they come",
    )
    run.add_argument(
        "--jobs",
        type=_positive_int,
        default=1,
        metavar="N",
        help="scenarios run side by side (default 1; each has its own fakes, ports and clock)",
    )
    run.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    run.add_argument("--json", metavar="FILE", help="write a JSON report with timelines")
    run.add_argument(
        "--html",
        metavar="FILE",
        help="write a self-contained HTML report with a sequence diagram per scenario",
    )
    run.add_argument(
        "--diagram",
        action="store_true",
        help="print each run's sequence diagram (for a failure, instead of its raw timeline)",
    )
    run.set_defaults(func=_run)

    board = actions.add_parser(
        "scoreboard",
        help="run scenarios (default: all) against several subjects and print the matrix",
        description="Run the catalogue against several subjects (default: the official Python "
        "and TypeScript SDK clients, each directly and through freshtoken's proxy) and print "
        "scenario by subject: pass, FAIL with the failed invariants, or n/a.",
    )
    board.add_argument("names", nargs="*", metavar="NAME")
    catalogue_option(board)
    board.add_argument(
        "--subject",
        action="append",
        metavar="S",
        help=f"a subject (repeatable): {', '.join(subjects)}, or mutant:NAME "
        f"(default: {' and '.join(SDK_SUBJECTS)})",
    )
    rows = board.add_mutually_exclusive_group()
    rows.add_argument(
        "--direct", action="store_true", help="client subjects only as they are (no proxy)"
    )
    rows.add_argument(
        "--via-proxy", action="store_true", help="client subjects only through the proxy"
    )
    board.add_argument("--command", metavar="CMD", help="the client command for --subject command")
    _sdk_dir_option(board)
    board.add_argument(
        "--jobs",
        type=_positive_int,
        default=SCOREBOARD_JOBS,
        metavar="N",
        help=f"runs side by side (default: {SCOREBOARD_JOBS})",
    )
    board.add_argument("--markdown", metavar="FILE", help="also write the Markdown to FILE")
    board.add_argument("--json", metavar="FILE", help="write every cell as JSON")
    board.set_defaults(func=_scoreboard)


def _sdk_dir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sdk-dir",
        metavar="DIR",
        help="where @modelcontextprotocol/sdk is installed for typescript-sdk (default: "
        "installed with npm on first use into $XDG_CACHE_HOME/freshtoken/)",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _no_action(args: argparse.Namespace) -> int:
    args.parser.print_help(sys.stderr)
    return 2


def _catalogue(args: argparse.Namespace) -> list[Scenario]:
    return load_catalogue(args.catalogue)


def _list(args: argparse.Namespace) -> int:
    try:
        scenarios = _catalogue(args)
    except ConfigError as exc:
        return _usage_error(exc)
    width = max(len(s.name) for s in scenarios)
    for scenario in scenarios:
        judges = "+".join(scenario.applicability.roles)
        print(f"{scenario.name:<{width}}  {judges:<12}  {scenario.title}")
    return 0


def _show(args: argparse.Namespace) -> int:
    try:
        scenario = _pick(_catalogue(args), [args.name])[0]
    except ConfigError as exc:
        return _usage_error(exc)
    print(f"# {scenario.source}")
    if scenario.source is not None:
        print(Path(scenario.source).read_text(encoding="utf-8"), end="")
    if args.diagram:
        try:
            subject = get_subject(args.subject)
        except ConfigError as exc:
            return _usage_error(exc)
        print()
        print(_diagram_block(asyncio.run(run_scenario(scenario, subject))))
    return 0


def _diagram_block(result: ScenarioResult) -> str:
    verdict = {"passed": "pass", "failed": "FAILED"}.get(result.outcome, "not applicable")
    lines = [f"{result.scenario.name} on {result.subject}: {verdict}"]
    if result.not_applicable is not None:
        lines.append(f"  {result.not_applicable}")
        return "\n".join(lines)
    lines += [f"  {check.name}: {check.reason}" for check in result.failures]
    lines.append(diagram_text(result))
    return "\n".join(lines)


def _pick(scenarios: list[Scenario], names: list[str]) -> list[Scenario]:
    if not names:
        return scenarios
    by_name = {s.name: s for s in scenarios}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(f"unknown scenario {unknown[0]!r} (see `freshtoken scenarios list`)")
    return [by_name[n] for n in names]


def _run(args: argparse.Namespace) -> int:
    live = _Live(sys.stdout) if args.verbose else None
    try:
        if args.verbose and args.jobs > 1:
            raise ConfigError.at(
                "freshtoken scenarios run", "--jobs", "-v shows one scenario at a time: use one job"
            )
        scenarios = _pick(_catalogue(args), args.names)
        subject = get_subject(
            args.subject,
            command=args.command,
            via_proxy=args.via_proxy,
            revisions=args.command_revision,
            clock=args.command_clock,
            echo=live.output if live is not None else None,
            sdk_dir=args.sdk_dir,
            notice=_notice,
        )
        results = asyncio.run(_run_all(scenarios, args.subject, subject, live, args.jobs))
    except ConfigError as exc:
        return _usage_error(exc)
    print()
    print(summary_table(results))
    for result in results:
        if args.diagram:
            print()
            print(_diagram_block(result))
        elif result.failed:
            print()
            print(result.format_failures())
    if args.html:
        write_html(results, args.html, subject=args.subject)
    if args.junit:
        write_junit(results, args.junit)
    if args.json:
        write_json(results, args.json)
    return 1 if any(r.failed for r in results) else 0


class _Live:
    """``-v``: log lines and the command's output as they come, indented under the scenario."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def line(self, text: str) -> None:
        for part in text.rstrip("\n").splitlines():
            print(f"    {part}", file=self.stream, flush=True)

    def output(self, text: str) -> None:
        self.line(text)


_SCENARIO_LOG: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "freshtoken_scenario_log", default=None
)
"""The log lines of the scenario whose run the current task belongs to (every task a run
starts, its servers' handlers included, inherits it)."""


class _Capture(logging.Handler):
    """Keeps each scenario's log lines for its report instead of letting them interleave with
    the progress lines (shown live with ``-v``); with several jobs each run keeps its own."""

    def __init__(self, live: _Live | None) -> None:
        super().__init__(logging.INFO if live is not None else logging.WARNING)
        self.live = live
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        lines = _SCENARIO_LOG.get()
        if lines is None:
            return
        line = self.format(record)
        lines.append(line)
        if self.live is not None:
            self.live.line(line)


async def _run_all(
    scenarios: list[Scenario],
    label: str,
    subject: Subject,
    live: _Live | None,
    jobs: int = 1,
) -> list[ScenarioResult]:
    total = len(scenarios)
    capture = _Capture(live)
    root, ours = logging.getLogger(), logging.getLogger("freshtoken")
    level = ours.level
    root.addHandler(capture)
    if live is not None:
        # freshtoken's own INFO lines only: an HTTP library's request lines would print URLs
        # with the proxy's capability secret in them.
        ours.setLevel(logging.INFO)
    gate = asyncio.Semaphore(jobs)
    finished = 0

    async def one(index: int, scenario: Scenario) -> ScenarioResult:
        nonlocal finished
        async with gate:
            if jobs == 1:
                print(f"[{index}/{total}] {scenario.name} on {label} ...", end="", flush=True)
                if live is not None:
                    print(flush=True)
            lines: list[str] = []
            _SCENARIO_LOG.set(lines)  # this task's own context: no other run sees it
            result = await run_scenario(scenario, subject)
            result = dataclasses.replace(result, log=tuple(lines))
            verdict = {"passed": "pass", "failed": "FAIL"}.get(result.outcome, "n/a")
            timing = f" ({result.duration:.2f}s)" if result.not_applicable is None else ""
            if jobs == 1:
                print(f"{'    ' if live is not None else ' '}{verdict}{timing}", flush=True)
            else:
                finished += 1
                print(f"[{finished}/{total}] {scenario.name} on {label} ... {verdict}{timing}")
            return result

    try:
        # Each run in a task of its own: the context variable stays with it.
        tasks = [asyncio.ensure_future(one(i, s)) for i, s in enumerate(scenarios, 1)]
        return list(await asyncio.gather(*tasks))
    finally:
        root.removeHandler(capture)
        ours.setLevel(level)


def _notice(text: str) -> None:
    print(f"freshtoken scenarios: {text}", file=sys.stderr, flush=True)


# Client subjects that can also be given the proxy's URL: each is a row directly and one via it.
_CLIENTS = frozenset({"command", *SDK_SUBJECTS})


def _scoreboard(args: argparse.Namespace) -> int:
    names = args.subject or list(SDK_SUBJECTS)
    vias = [False] if args.direct else [True] if args.via_proxy else [False, True]
    try:
        scenarios = _pick(_catalogue(args), args.names)
        subjects = [
            get_subject(
                name,
                command=args.command,
                via_proxy=via,
                sdk_dir=args.sdk_dir,
                notice=_notice,
            )
            for name in dict.fromkeys(names)
            for via in (vias if name in _CLIENTS else [False])
        ]
    except ConfigError as exc:
        return _usage_error(exc)
    total = len(scenarios) * len(subjects)
    done = 0

    def progress(result: ScenarioResult, label: str) -> None:
        nonlocal done
        done += 1
        verdict = {"passed": "pass", "failed": "FAIL"}.get(result.outcome, "n/a")
        timing = f" ({result.duration:.2f}s)" if result.not_applicable is None else ""
        print(f"[{done}/{total}] {result.scenario.name} on {label}: {verdict}{timing}", flush=True)

    # Log lines cannot be told apart between runs side by side: they are kept out of the matrix.
    capture = _Capture(None)
    logging.getLogger().addHandler(capture)
    try:
        board = asyncio.run(run_scoreboard(scenarios, subjects, jobs=args.jobs, progress=progress))
    finally:
        logging.getLogger().removeHandler(capture)
    print()
    print(board.to_markdown())
    print()
    print(f"{total} runs in {board.duration:.1f} s ({args.jobs} at a time)")
    if args.markdown:
        board.write_markdown(args.markdown)
    if args.json:
        board.write_json(args.json)
    return 0


def _usage_error(exc: ConfigError) -> int:
    print(f"freshtoken scenarios: {exc}", file=sys.stderr)
    return 2
