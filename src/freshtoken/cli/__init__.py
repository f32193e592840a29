"""The ``freshtoken`` command."""

from __future__ import annotations

from freshtoken.cli._main import main

__all__ = ["main"]
