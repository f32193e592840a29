"""Dispatch ``freshtoken <command>`` to the subcommand modules.

Each subcommand module exposes ``add_parser(subparsers)`` which registers its parser and sets
``func`` (taking the parsed namespace, returning an exit code) as the parser default. Only the
module of the command being run is imported: ``freshtoken proxy`` must work where only the proxy
is installed, whatever the harness's commands need.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Final

from freshtoken import __version__
from freshtoken._extras import HARNESS_MODULES, needs_harness

_COMMANDS: Final = {
    "fakes": (
        "freshtoken.cli._fakes",
        "run the fake OAuth AS and a fake MCP server on loopback",
    ),
    "login": (
        "freshtoken.cli._login",
        "log in to an MCP server (OAuth) and store what the proxy needs to refresh",
    ),
    "proxy": ("freshtoken.cli._proxy", "run the token-refreshing loopback proxy"),
    "scenarios": (
        "freshtoken.cli._scenarios",
        "list, show and run the token-rotation scenario catalogue",
    ),
}

_Subparsers = argparse._SubParsersAction  # argparse names no public type for it


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``freshtoken`` parser, with the full parser of ``command`` (others listed by name)."""
    parser = argparse.ArgumentParser(
        prog="freshtoken",
        description="Keep OAuth bearer tokens fresh for MCP clients, and prove it.",
    )
    parser.add_argument("--version", action="version", version=f"freshtoken {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, summary) in _COMMANDS.items():
        if name != command:
            subparsers.add_parser(name, help=summary)
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            top = (exc.name or "").split(".")[0]
            if not top or top == "freshtoken":
                raise
            # Another package's module is missing: one the harness extra brings.
            _add_unavailable(subparsers, name, summary, HARNESS_MODULES.get(top, top))
        else:
            module.add_parser(subparsers)
    return parser


def _add_unavailable(
    subparsers: _Subparsers[argparse.ArgumentParser], command: str, summary: str, missing: str
) -> None:
    message = needs_harness(f"freshtoken {command}", [missing])
    parser = subparsers.add_parser(command, help=summary, add_help=False)
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def unavailable(args: argparse.Namespace) -> int:
        print(message, file=sys.stderr)
        return 2

    parser.set_defaults(func=unavailable)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``freshtoken`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in arguments if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(arguments)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    code: int = func(args)
    return code
