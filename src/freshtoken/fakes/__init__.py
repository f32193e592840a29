"""Fake OAuth authorization server and fake MCP servers that misbehave on purpose."""

from __future__ import annotations

from freshtoken._clock import ManualClock
from freshtoken.fakes._faults import ACTION_KINDS, Action, Fault, FaultPlan, Match
from freshtoken.fakes._mcp_server import AUTH_FAILURE_STYLES, FakeMCPServer
from freshtoken.fakes._oauth_app import FakeAuthorizationServer, oauth_application
from freshtoken.fakes._oauth_core import (
    ClientRecord,
    CoreRequest,
    CoreResponse,
    OAuthCore,
    SeenTokenRequest,
    TokenInfo,
    TokenPair,
    TokenPolicy,
)
from freshtoken.fakes._oauth_respx import mount_respx
from freshtoken.fakes._tls import FakeCA

__all__ = [
    "ACTION_KINDS",
    "AUTH_FAILURE_STYLES",
    "Action",
    "ClientRecord",
    "CoreRequest",
    "CoreResponse",
    "FakeAuthorizationServer",
    "FakeCA",
    "FakeMCPServer",
    "Fault",
    "FaultPlan",
    "ManualClock",
    "Match",
    "OAuthCore",
    "SeenTokenRequest",
    "TokenInfo",
    "TokenPair",
    "TokenPolicy",
    "mount_respx",
    "oauth_application",
]
