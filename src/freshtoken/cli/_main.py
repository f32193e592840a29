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

_SUBCOMMAND_MODULES: tuple[str, ...] = (
    "freshtoken.cli._fakes",
    "freshtoken.cli._proxy",
    "freshtoken.cli._scenarios",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="freshtoken",
        description="Keep OAuth bearer tokens fresh for MCP clients, and prove it.",
    )
    parser.add_argument("--version", action="version", version=f"freshtoken {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _SUBCOMMAND_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


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
