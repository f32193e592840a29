"""``freshtoken login``: get credentials for a target through the MCP authorization flow.

``freshtoken login TARGET --config FILE`` logs in to a ``[targets.NAME]`` of the proxy's config
and writes its store; ``freshtoken login URL --store FILE`` does the same for a bare MCP server
URL. ``--status`` lists what stores hold (fingerprints only); ``--logout`` revokes and deletes.
Errors are one line on stderr; the exit code says which step failed (see :data:`EXIT_CODES`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from freshtoken import ConfigError
from freshtoken.proxy import (
    ClientKey,
    LoginError,
    LoginFailure,
    LoginTarget,
    load_login_targets,
    login,
    login_status,
    logout,
)

EXIT_CODES: Final = {
    0: "logged in (or --status / --logout done)",
    1: LoginFailure.FAILED.meaning,
    2: "bad arguments or config file",
    **{failure.value: failure.meaning for failure in LoginFailure if failure.value > 2},
}
_FORMAT = "%(levelname)s %(name)s %(message)s"


def add_parser(subparsers: Any) -> None:
    """Register the ``login`` subcommand."""
    codes = "\n".join(f"  {code}  {what}" for code, what in sorted(EXIT_CODES.items()))
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "login",
        help="log in to an MCP server (OAuth) and store the credentials the proxy needs",
        description=(
            "Run the MCP authorization flow for TARGET (a [targets.NAME] of --config) or URL "
            "(with --store) and write the store the proxy refreshes from."
        ),
        epilog=f"exit codes:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", nargs="?", metavar="TARGET|URL")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", type=Path, metavar="FILE", help="the proxy's TOML config")
    where.add_argument("--store", type=Path, metavar="FILE", help="the store to write (with URL)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--status", action="store_true", help="show what the stores hold")
    action.add_argument("--logout", action="store_true", help="revoke and delete the store")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--no-browser", action="store_true", help="print the URL, open nothing")
    how.add_argument(
        "--headless",
        action="store_true",
        help="follow the authorization URL's redirects without a browser (auto-approving servers)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long to wait for the redirect (default 300)",
    )
    parser.add_argument("--scope", help="the scope to ask for (default: as the MCP spec says)")
    parser.add_argument("--port", type=int, default=None, help="the redirect listener's port")
    client = parser.add_argument_group("with --store: the client and the servers")
    client.add_argument("--client-id", help="a pre-registered client id")
    client.add_argument(
        "--client-secret-env", metavar="NAME", help="environment variable holding its secret"
    )
    client.add_argument(
        "--auth-method", choices=("client_secret_basic", "client_secret_post", "none")
    )
    client.add_argument(
        "--private-key-file",
        type=Path,
        metavar="PEM",
        help="authenticate with private_key_jwt, signing with this key (the --client-id's, "
        "or registered with it)",
    )
    client.add_argument(
        "--signing-alg", metavar="ALG", help="its JWS algorithm (default: the key's)"
    )
    client.add_argument(
        "--client-metadata-url", metavar="URL", help="a Client ID Metadata Document's URL"
    )
    client.add_argument(
        "--grant", choices=("authorization_code", "client_credentials"), default=None
    )
    client.add_argument("--resource", help="the RFC 8707 resource (default: discovered)")
    client.add_argument("--ca-file", type=Path, metavar="PEM", help="trust this CA (both servers)")
    client.add_argument("--allow-insecure-http", action="store_true")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.set_defaults(func=run)


def _fail(message: str, code: int) -> int:
    print(f"freshtoken login: {message}", file=sys.stderr)
    return code


def _announce(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Dispatch to login, status or logout; return the exit code."""
    logging.basicConfig(level=logging.WARNING, format=_FORMAT)
    if args.verbose:
        logging.getLogger("freshtoken").setLevel(
            logging.DEBUG if args.verbose > 1 else logging.INFO
        )
    try:
        targets = _targets(args)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    if args.status:
        for name, target in targets.items():
            if isinstance(target, ConfigError):
                print(f"{name}: not a login target ({target.reason})")
                continue
            prefix = f"{name}: " if args.config is not None else ""
            print(prefix + login_status(target.store).summary())
        return 0
    if (args.config is not None and args.target is None) or len(targets) != 1:
        return _fail("name the TARGET to log in to (or use --status)", 2)
    ((name, target),) = targets.items()
    if isinstance(target, ConfigError):
        return _fail(str(target), 2)
    if args.logout:
        try:
            revoked = asyncio.run(
                logout(
                    target.store,
                    verify=target.as_verify,
                    timeout=target.timeout,
                    deadline=target.deadline,
                )
            )
        except LoginError as exc:
            return _fail(str(exc), exc.failure.value)
        print(f"{name}: logged out ({'revoked, ' if revoked else ''}store {target.store} deleted)")
        return 0
    mode: Literal["browser", "print", "headless"] = (
        "headless" if args.headless else "print" if args.no_browser else "browser"
    )
    try:
        result = asyncio.run(
            login(target, mode=mode, redirect_timeout=args.timeout, announce=_announce)
        )
    except LoginError as exc:
        return _fail(str(exc), exc.failure.value)
    print(result.summary())
    return 0


def _targets(args: argparse.Namespace) -> dict[str, LoginTarget | ConfigError]:
    overrides = _overrides(args)
    if args.config is not None:
        if args.store_only_flags:
            raise ConfigError.at(
                "freshtoken login",
                args.store_only_flags[0],
                "only with --store (the config file says it for a target)",
            )
        found = load_login_targets(args.config)
        if args.target is not None:
            if args.target not in found:
                raise ConfigError.at(str(args.config), f"targets.{args.target}", "no such target")
            found = {args.target: found[args.target]}
        return {
            name: dataclasses.replace(target, **overrides)
            if isinstance(target, LoginTarget)
            else target
            for name, target in found.items()
        }
    store: Path = args.store
    if args.target is None:
        if args.status or args.logout:
            return {str(store): LoginTarget(url="", store=store, **_store_options(args))}
        raise ConfigError.at("freshtoken login", "URL", "give the MCP server's URL with --store")
    parts = urlsplit(args.target)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError.at("freshtoken login", "URL", f"not an http(s) URL: {args.target!r}")
    return {
        args.target: LoginTarget(url=args.target, store=store, **_store_options(args), **overrides)
    }


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.scope is not None:
        overrides["scope"] = args.scope
    if args.port is not None:
        overrides["redirect_port"] = args.port
    flags = [
        flag
        for flag, value in (
            ("--client-id", args.client_id),
            ("--client-secret-env", args.client_secret_env),
            ("--auth-method", args.auth_method),
            ("--client-metadata-url", args.client_metadata_url),
            ("--grant", args.grant),
            ("--resource", args.resource),
            ("--ca-file", args.ca_file),
            ("--allow-insecure-http", args.allow_insecure_http or None),
        )
        if value is not None
    ]
    args.store_only_flags = flags
    return overrides


def _store_options(args: argparse.Namespace) -> dict[str, Any]:
    secret = None
    if args.client_secret_env is not None:
        secret = os.environ.get(args.client_secret_env)
        if not secret:
            raise ConfigError.at(
                "freshtoken login",
                "--client-secret-env",
                f"environment variable {args.client_secret_env} is not set",
            )
    if args.ca_file is not None and not args.ca_file.is_file():
        raise ConfigError.at("freshtoken login", "--ca-file", f"no such file {args.ca_file}")
    verify: Path | bool = args.ca_file if args.ca_file is not None else True
    key: dict[str, Any] = {}
    if args.private_key_file is not None:
        try:
            client_key = ClientKey.from_file(args.private_key_file, args.signing_alg)
        except ValueError as exc:
            raise ConfigError.at("freshtoken login", "--private-key-file", str(exc)) from None
        key = {"client_key": client_key, "private_key_file": args.private_key_file.resolve()}
    elif args.signing_alg is not None:
        raise ConfigError.at("freshtoken login", "--signing-alg", "only with --private-key-file")
    return {
        **key,
        "client_id": args.client_id,
        "client_secret": secret,
        "auth_method": args.auth_method,
        "client_metadata_url": args.client_metadata_url,
        "grant": args.grant or "authorization_code",
        "resource": args.resource,
        "server_verify": verify,
        "as_verify": verify,
        "allow_insecure_http": args.allow_insecure_http,
    }
