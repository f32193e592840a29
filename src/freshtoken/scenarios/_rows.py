"""Rows of a sequence diagram, and how free text is made safe to show in a report."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from freshtoken._timeline import fingerprint

__all__ = ["LANES", "LANE_TITLES", "Row", "RowKind", "scrub"]

LANES = ("client", "proxy", "mcp", "as")
LANE_TITLES = {
    "client": "client",
    "proxy": "proxy",
    "mcp": "MCP server",
    "as": "authorization server",
}


RowKind = Literal["arrow", "mark", "span"]


# A run of base64url or hex characters long enough to be a credential, a session id or a
# capability path. Tokens normally never reach a report (the timeline holds fingerprints only);
# this catches free text such as exception messages and test output.
_SECRET_LIKE = re.compile(r"[A-Za-z0-9_\-]{20,}")


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the diagram.

    ``arrow`` goes from lane ``source`` to lane ``target``; ``mark`` sits on lane ``source``;
    ``span`` crosses every lane (rotations, expiries, revocations, injected faults). ``count`` > 1
    means this row stands for that many alike events; ``seqs`` are their timeline numbers.
    """

    kind: RowKind
    source: str
    target: str
    label: str
    tag: str = "info"
    tokens: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()
    status: int | None = None
    stream: str | None = None
    seqs: tuple[int, ...] = ()
    time: float = 0.0
    count: int = 1
    pins: tuple[str, ...] = ()
    detail: str = ""

    @property
    def signature(self) -> tuple[Any, ...]:
        """What makes two rows alike: everything but which events and when."""
        return (
            self.kind,
            self.source,
            self.target,
            self.label,
            self.tag,
            self.tokens,
            self.stale,
            self.status,
            self.stream,
            self.pins,
        )


def scrub(text: object, limit: int = 240) -> str:
    """Text fit for a report: anything credential-shaped replaced by its fingerprint, bounded."""
    value = str(text)

    def hide(match: re.Match[str]) -> str:
        word = match.group(0)
        # Names like test_survives_rotation_and_expiry are long too; credentials mix cases and
        # digits (base64url) or are long hex.
        mixed = any(c.isupper() for c in word) and any(c.islower() for c in word)
        hexish = all(c in "0123456789abcdef" for c in word) and any(c.isdigit() for c in word)
        if (mixed and any(c.isdigit() for c in word)) or hexish:
            return f"#{fingerprint(word)}"
        return word

    value = _SECRET_LIKE.sub(hide, value)
    return value if len(value) <= limit else value[: limit - 1] + "…"
