"""Benchmark process: one freshtoken proxy in front of the fake MCP server.

Its token source is the refresh-token grant against the fake AS, as a user would configure it;
no timeline (a production proxy records none).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys

from _worker import command_loop

from freshtoken.proxy import Proxy, RefreshTokenSource


async def main(args: argparse.Namespace, refresh_token: str) -> None:
    source = RefreshTokenSource(
        args.token_endpoint, args.client_id, args.client_secret, refresh_token=refresh_token
    )
    async with Proxy() as proxy:
        url = proxy.register("mcp", args.upstream, source)
        await source.token()

        async def fetches() -> int:
            return source.fetches

        await command_loop({"url": url}, {"fetches": fetches})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for flag in ("--upstream", "--token-endpoint", "--client-id", "--client-secret"):
        parser.add_argument(flag, required=True)
    # The refresh token is a secret: it comes over stdin, never on the command line.
    secret = sys.stdin.readline().strip()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(parser.parse_args(), secret))
