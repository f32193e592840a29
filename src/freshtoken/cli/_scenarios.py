"""``freshtoken scenarios list | show NAME | run [NAMES...]``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from freshtoken._errors import ConfigError
from freshtoken.scenarios import (
    Scenario,
    ScenarioResult,
    Subject,
    builtin_subjects,
    diagram_text,
    get_subject,
    load_catalogue,
    run_scenario,
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
    subjects = [*builtin_subjects(), "command"]
    run.add_argument(
        "--subject",
        default="proxy",
        metavar="S",
        help=f"the subject under test: {', '.join(subjects)} (default: proxy)",
    )
    run.add_argument("--command", metavar="CMD", help="the client command for --subject command")
    run.add_argument(
        "--command-via-proxy",
        action="store_true",
        help="give the command the proxy's URL instead of the MCP server's",
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
        print(f"{scenario.name:<{width}}  {scenario.title}")
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
    lines = [f"{result.scenario.name} on {result.subject}: {'pass' if result.passed else 'FAILED'}"]
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
    try:
        scenarios = _pick(_catalogue(args), args.names)
        subject = get_subject(args.subject, command=args.command, via_proxy=args.command_via_proxy)
    except ConfigError as exc:
        return _usage_error(exc)
    results = asyncio.run(_run_all(scenarios, args.subject, subject))
    print()
    print(summary_table(results))
    for result in results:
        if args.diagram:
            print()
            print(_diagram_block(result))
        elif not result.passed:
            print()
            print(result.format_failures())
    if args.html:
        write_html(results, args.html, subject=args.subject)
    if args.junit:
        write_junit(results, args.junit)
    if args.json:
        write_json(results, args.json)
    return 0 if all(r.passed for r in results) else 1


async def _run_all(scenarios: list[Scenario], label: str, subject: Subject) -> list[ScenarioResult]:
    results = []
    total = len(scenarios)
    for i, scenario in enumerate(scenarios, 1):
        print(f"[{i}/{total}] {scenario.name} on {label} ...", end=" ", flush=True)
        result = await run_scenario(scenario, subject)
        print(f"{'pass' if result.passed else 'FAIL'} ({result.duration:.2f}s)", flush=True)
        results.append(result)
    return results


def _usage_error(exc: ConfigError) -> int:
    print(f"freshtoken scenarios: {exc}", file=sys.stderr)
    return 2
