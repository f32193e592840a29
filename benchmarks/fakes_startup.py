"""Median time to start and stop the fake AS + fake MCP server together (target: <= 50 ms).

Run: python benchmarks/fakes_startup.py [rounds]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from freshtoken import ManualClock
from freshtoken.fakes import FakeAuthorizationServer, FakeMCPServer


async def one_round() -> float:
    started = time.perf_counter()
    async with (
        FakeAuthorizationServer(clock=ManualClock()) as authz,
        FakeMCPServer(authorization_server=authz),
    ):
        pass
    return time.perf_counter() - started


async def main(rounds: int) -> None:
    await one_round()  # warm-up: imports, first socket
    samples = [await one_round() for _ in range(rounds)]
    median = statistics.median(samples) * 1000
    p90 = statistics.quantiles(samples, n=10)[-1] * 1000
    print(
        f"fake AS + fake MCP start+stop over {rounds} rounds: median {median:.2f} ms, p90 {p90:.2f} ms"
    )
    print(f"target <= 50 ms: {'met' if median <= 50 else 'NOT met'}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50))
