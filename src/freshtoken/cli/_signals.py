"""Long-running subcommands serve until SIGINT or SIGTERM, then shut down cleanly."""

from __future__ import annotations

import asyncio
import signal

__all__ = ["stop_requested"]


def stop_requested() -> asyncio.Event:
    """An event that SIGINT or SIGTERM sets, handled on the running loop from now on.

    Call it before starting to serve, so a signal that arrives during startup still ends in a
    clean shutdown rather than the default handler killing the process.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop
