"""``freshtoken proxy --config FILE``: serve the configured targets until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from freshtoken import ConfigError
from freshtoken.cli._signals import stop_requested
from freshtoken.proxy import ProxyConfig, load_config

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def add_parser(subparsers: Any) -> None:
    """Register the ``proxy`` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "proxy",
        help="run the token-refreshing loopback proxy",
        description=(
            "Serve every [targets.NAME] of the TOML config file on loopback. Prints one line "
            "per target, 'NAME LOCAL_URL', then serves until SIGINT or SIGTERM."
        ),
    )
    parser.add_argument("--config", required=True, type=Path, metavar="FILE")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help=(
            "-v: freshtoken's own debug log (requests, refreshes; fingerprints only) on stderr; "
            "-vv: also the libraries' debug log (aiohttp, httpx, httpcore, asyncio)"
        ),
    )
    parser.set_defaults(func=run)


def configure_logging(verbosity: int) -> None:
    """Warnings and errors always; freshtoken's debug lines from ``-v``; everyone's from ``-vv``.

    Third-party debug output is noisy and, at the wire level, describes traffic in detail: it is
    shown only when asked for twice.
    """
    logging.basicConfig(level=logging.DEBUG if verbosity >= 2 else logging.WARNING, format=_FORMAT)
    if verbosity >= 1:
        logging.getLogger("freshtoken").setLevel(logging.DEBUG)


def run(args: argparse.Namespace) -> int:
    """Load the config (exit 2 on a bad one) and serve."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"freshtoken proxy: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.verbose)
    try:
        return asyncio.run(_serve(config), debug=args.verbose >= 2)
    except OSError as exc:
        print(f"freshtoken proxy: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 1


async def _serve(config: ProxyConfig) -> int:
    stop = stop_requested()
    async with config.create_proxy() as proxy:
        try:
            urls = config.register_all(proxy)
        except ValueError as exc:
            # The schema checks what it can; the proxy has the last word on a target.
            print(f"freshtoken proxy: {config.path}: {exc}", file=sys.stderr)
            return 2
        for name, url in urls.items():
            print(f"{name} {url}", flush=True)
        await stop.wait()
    return 0
