"""How the fakes are set up for one run, and the values each setting allows.

One definition serves the scenario files (``[setup]``), the Hypothesis strategies and the pytest
marker. It lives outside the subpackages so the pytest plugin can import it without loading the
fakes or the scenario engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, get_args

if TYPE_CHECKING:
    from freshtoken.fakes import TokenPolicy

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


@dataclass(frozen=True)
class Setup:
    """How the fakes are configured before the first step.

    The token-policy fields are the fake authorization server's; the rest configure the fake MCP
    server.
    """

    protocol_version: ProtocolVersion = "2025-11-25"
    response_mode: ResponseMode = "json"
    access_ttl: float = 3600.0
    report_expires_in: bool = True
    rotate_refresh_tokens: bool = True
    reuse_detection: bool = True
    grace_period: float = 0.0
    tls: bool = False
    auth_failure_style: AuthFailureStyle = "401"
    stream_auth: StreamAuth = "start"

    def token_policy(self) -> TokenPolicy:
        """The fake authorization server's token policy for these settings."""
        from freshtoken.fakes import TokenPolicy

        return TokenPolicy(
            access_ttl=self.access_ttl,
            report_expires_in=self.report_expires_in,
            rotate_refresh_tokens=self.rotate_refresh_tokens,
            reuse_detection=self.reuse_detection,
            grace_period=self.grace_period,
        )
