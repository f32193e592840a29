"""Benchmark process: one freshtoken proxy in front of the fake MCP server and the light upstream.

The fake MCP target's token source is the refresh-token grant against the fake AS, as a user
would configure it; the light upstream's is a static bearer, as nginx gets in its row. No
timeline (a production proxy records none).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys

from _worker import command_loop

from freshtoken.proxy import Proxy, RefreshTokenSource, StaticTokenSource


async def main(args: argparse.Namespace, secrets: dict[str, str]) -> None:
    source = RefreshTokenSource(
        args.token_endpoint,
        args.client_id,
        args.client_secret,
        refresh_token=secrets["refresh_token"],
    )
    async with Proxy() as proxy:
        url = proxy.register("mcp", args.upstream, source)
        light = proxy.register("light", args.light_upstream, StaticTokenSource(secrets["light"]))
        await source.token()

        async def fetches() -> int:
            return source.fetches

        await command_loop({"url": url, "light_url": light}, {"fetches": fetches})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for flag in (
        "--upstream",
        "--light-upstream",
        "--token-endpoint",
        "--client-id",
        "--client-secret",
    ):
        parser.add_argument(flag, required=True)
    # Tokens are secrets: they come over stdin, never on the command line.
    secrets = json.loads(sys.stdin.readline())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(parser.parse_args(), secrets))
