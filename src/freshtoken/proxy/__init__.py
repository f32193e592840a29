"""The loopback proxy: a fresh token on every hop, one refresh and one replay on auth failure."""

from __future__ import annotations

__all__: list[str] = []
