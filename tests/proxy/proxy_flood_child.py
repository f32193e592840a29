"""A proxy in its own process under a lowered open-file limit, for the connection-flood test.

Usage: ``python proxy_flood_child.py NOFILE UPSTREAM_URL LOG_FILE``. Prints the target's local
URL on one line, logs to LOG_FILE, and serves until stdin closes.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import sys

from freshtoken.proxy import Limits, Proxy, StaticTokenSource


async def main(nofile: int, upstream: str) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
    # A long header deadline: what frees the flooded connections must be the cap, not a timer.
    limits = Limits(header_timeout=300, keepalive_timeout=300)
    async with Proxy(limits=limits) as proxy:
        print(proxy.register("up", upstream, StaticTokenSource("t")), flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, filename=sys.argv[3])
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
