"""Fake OAuth authorization server and fake MCP servers that misbehave on purpose."""

from __future__ import annotations

from freshtoken._clock import ManualClock
from freshtoken.fakes._tls import FakeCA

__all__ = ["FakeCA", "ManualClock"]
