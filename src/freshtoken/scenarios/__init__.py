"""Scenario model, catalogue, runner and subjects."""

from __future__ import annotations

__all__: list[str] = []
