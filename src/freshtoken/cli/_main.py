"""Dispatch ``freshtoken <command>`` to the subcommand modules.

Each subcommand module exposes ``add_parser(subparsers)`` which registers its parser and sets
``func`` (taking the parsed namespace, returning an exit code) as the parser default.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from freshtoken import __version__
from freshtoken._extras import HARNESS_MODULES, needs_harness

_SUBCOMMAND_MODULES: tuple[tuple[str, str], ...] = (
    ("fakes", "freshtoken.cli._fakes"),
    ("proxy", "freshtoken.cli._proxy"),
    ("scenarios", "freshtoken.cli._scenarios"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="freshtoken",
        description="Keep OAuth bearer tokens fresh for MCP clients, and prove it.",
    )
    parser.add_argument("--version", action="version", version=f"freshtoken {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command, module_name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # The proxy installs without the harness extra; its commands must still run.
            if exc.name is None or exc.name.split(".")[0] not in HARNESS_MODULES:
                raise
            _add_unavailable(subparsers, command, HARNESS_MODULES[exc.name.split(".")[0]])
        else:
            module.add_parser(subparsers)
    return parser


def _add_unavailable(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], command: str, missing: str
) -> None:
    message = needs_harness(f"freshtoken {command}", [missing])
    parser = subparsers.add_parser(
        command, help=f"(needs the harness extra) {message}", add_help=False
    )
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def unavailable(args: argparse.Namespace) -> int:
        print(message, file=sys.stderr)
        return 2

    parser.set_defaults(func=unavailable)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``freshtoken`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    code: int = func(args)
    return code
