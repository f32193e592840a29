"""freshtoken: keep OAuth bearer tokens fresh for MCP clients, and prove it."""

from __future__ import annotations

from freshtoken._clock import Clock, ManualClock, SystemClock
from freshtoken._errors import (
    ConfigError,
    FreshtokenError,
    GrantInDoubtError,
    InvalidGrantError,
    InvariantViolation,
    ServerSideError,
    TokenSourceError,
    UpstreamError,
)
from freshtoken._timeline import Event, Timeline, fingerprint

__version__ = "0.1.0"

__all__ = [
    "Clock",
    "ConfigError",
    "Event",
    "FreshtokenError",
    "GrantInDoubtError",
    "InvalidGrantError",
    "InvariantViolation",
    "ManualClock",
    "ServerSideError",
    "SystemClock",
    "Timeline",
    "TokenSourceError",
    "UpstreamError",
    "fingerprint",
]
