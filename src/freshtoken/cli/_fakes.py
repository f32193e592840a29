"""``freshtoken fakes``: run the fake AS and a fake MCP server until told to stop.

Prints one JSON object on stdout with everything a client in any language needs,
then serves until SIGINT or SIGTERM and exits 0 after a clean shutdown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from freshtoken._clock import SystemClock
from freshtoken._errors import ConfigError
from freshtoken._schema import parse
from freshtoken._setup import AUTH_FAILURE_STYLES, PROTOCOL_VERSIONS, RESPONSE_MODES, Setup
from freshtoken._timeline import Timeline
from freshtoken.cli._signals import stop_requested
from freshtoken.fakes import FakeMCPServer
from freshtoken.scenarios import Harness

__all__ = ["DEFAULT_MAX_EVENTS", "add_parser"]

DEFAULT_MAX_EVENTS = 10_000


def add_parser(subparsers: Any) -> None:
    """Register the ``fakes`` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "fakes",
        help="run the fake OAuth AS and a fake MCP server on loopback",
        description=(
            "Start the fake authorization server and a fake MCP server validating against it, "
            "print one JSON object with their URLs and seeded credentials, serve until "
            "SIGINT/SIGTERM."
        ),
    )
    parser.add_argument(
        "--tls", action="store_true", help="serve HTTPS from a throwaway CA (ca_path in the output)"
    )
    parser.add_argument(
        "--protocol-version",
        default="2025-11-25",
        choices=PROTOCOL_VERSIONS,
        help="MCP transport revision (default: %(default)s)",
    )
    parser.add_argument(
        "--response-mode",
        default="sse",
        choices=RESPONSE_MODES,
        help="how POSTs are answered, as the official SDK servers do by default (default: %(default)s)",
    )
    parser.add_argument("--auth-failure-style", default="401", choices=AUTH_FAILURE_STYLES)
    parser.add_argument("--access-ttl", type=float, default=3600.0, metavar="SECONDS")
    parser.add_argument(
        "--no-expires-in", action="store_true", help="omit expires_in from token responses"
    )
    parser.add_argument("--no-rotation", action="store_true", help="keep refresh tokens on refresh")
    parser.add_argument(
        "--no-reuse-detection",
        action="store_true",
        help="replayed refresh tokens do not revoke the family",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="refresh-token reuse grace window",
    )
    parser.add_argument(
        "--auth-off", action="store_true", help="the MCP server accepts requests without a bearer"
    )
    parser.add_argument(
        "--max-events",
        type=int,
        default=DEFAULT_MAX_EVENTS,
        metavar="N",
        help="keep only the newest N timeline events, so a long run stays small (default: %(default)s)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until a stop signal; return the exit code."""
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    try:
        setup: Setup = parse(
            Setup,
            {
                "protocol_version": args.protocol_version,
                "response_mode": args.response_mode,
                "auth_failure_style": args.auth_failure_style,
                "access_ttl": args.access_ttl,
                "report_expires_in": not args.no_expires_in,
                "rotate_refresh_tokens": not args.no_rotation,
                "reuse_detection": not args.no_reuse_detection,
                "grace_period": args.grace,
                "tls": args.tls,
            },
            source="freshtoken fakes",
        )
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.max_events < 1:
        print(
            f"freshtoken fakes: max_events: must be at least 1, got {args.max_events}",
            file=sys.stderr,
        )
        return 2
    stop = stop_requested()
    # The real clock: a client in another process cannot move a manual one.
    clock = SystemClock()
    timeline = Timeline(clock, max_events=args.max_events)
    async with Harness(setup, clock=clock, timeline=timeline, lazy=True) as harness:
        authz = await harness.start_authorization_server()
        mcp = await harness.adopt(
            FakeMCPServer(
                **{
                    **harness.mcp_server_options(),
                    "authorization_server": None if args.auth_off else authz,
                }
            )
        )
        pair = authz.issue_tokens(resource=mcp.url)
        info: dict[str, Any] = {
            "mcp_url": mcp.url,
            "resource_metadata_url": mcp.resource_metadata_url,
            "protocol_version": args.protocol_version,
            "as_metadata_url": authz.metadata_url,
            "token_endpoint": authz.token_endpoint,
            "client_id": authz.client_id,
            "client_secret": authz.client_secret,
            "refresh_token": pair.refresh_token,
            "access_token": pair.access_token,
            "as_control_url": authz.control_url,
            "mcp_control_url": mcp.control_url,
        }
        if harness.ca is not None:
            info["ca_path"] = str(harness.ca.ca_path)
        # The credentials are the output's purpose: a client in another process needs them.
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        await stop.wait()
    return 0
