"""How the fakes are set up for one run, and the values each setting allows.

One definition serves the scenario files (``[setup]``), the Hypothesis strategies and the pytest
marker, and one schema checks it everywhere (:mod:`freshtoken._schema`). It lives at the root,
importing no subpackage, so the pytest plugin can read a marker without loading the fakes or the
scenario engine; the harness turns a :class:`Setup` into running fakes.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from pydantic.dataclasses import dataclass

from freshtoken._schema import MODEL_CONFIG, Flag, PositiveSeconds, Seconds

__all__ = [
    "AUTH_FAILURE_STYLES",
    "PROTOCOL_VERSIONS",
    "REFRESHABLE_STYLES",
    "RESPONSE_MODES",
    "STATELESS_VERSION",
    "STREAM_AUTH_MODES",
    "AuthFailureStyle",
    "ProtocolVersion",
    "ResponseMode",
    "Setup",
    "StreamAuth",
]

ProtocolVersion = Literal["2025-06-18", "2025-11-25", "2026-07-28"]
ResponseMode = Literal["json", "sse"]
AuthFailureStyle = Literal[
    "401", "200-jsonrpc", "200-posthog", "200-tool-error", "403-scope", "400", "500"
]
StreamAuth = Literal["start", "event-error", "cut"]

PROTOCOL_VERSIONS: Final[tuple[ProtocolVersion, ...]] = get_args(ProtocolVersion)
"""The MCP revisions the harness speaks end to end."""
STATELESS_VERSION: Final = "2026-07-28"
"""The revision without sessions or handshake."""
RESPONSE_MODES: Final[tuple[ResponseMode, ...]] = get_args(ResponseMode)
AUTH_FAILURE_STYLES: Final[tuple[AuthFailureStyle, ...]] = get_args(AuthFailureStyle)
"""How the fake MCP server answers a request whose bearer is missing or no longer valid."""
REFRESHABLE_STYLES: Final[tuple[AuthFailureStyle, ...]] = (
    "401",
    "200-jsonrpc",
    "200-posthog",
    "200-tool-error",
)
"""The auth-failure styles a correct client answers with one refresh and one replay."""
STREAM_AUTH_MODES: Final[tuple[StreamAuth, ...]] = get_args(StreamAuth)


@dataclass(config=MODEL_CONFIG)
class Setup:
    """How the fakes are configured before the first step.

    The token-policy fields (``access_ttl``, ``report_expires_in``, ``rotate_refresh_tokens``,
    ``reuse_detection``, ``grace_period``) are the fake authorization server's; the rest configure
    the fake MCP server. Every field has one rule wherever it is written (Python, a scenario
    file, the pytest marker): ``access_ttl`` a finite number of seconds above zero,
    ``grace_period`` finite and zero or more, the flags true booleans, the rest one of their
    literals. Frozen; build a changed copy with :func:`dataclasses.replace`.
    """

    protocol_version: ProtocolVersion = "2025-11-25"
    response_mode: ResponseMode = "sse"
    access_ttl: PositiveSeconds = 3600.0
    report_expires_in: Flag = True
    rotate_refresh_tokens: Flag = True
    reuse_detection: Flag = True
    grace_period: Seconds = 0.0
    tls: Flag = False
    auth_failure_style: AuthFailureStyle = "401"
    stream_auth: StreamAuth = "start"
