"""Fake OAuth authorization server and fake MCP servers that misbehave on purpose."""

from __future__ import annotations

from freshtoken._clock import ManualClock
from freshtoken.fakes._fault_plan import FaultPlan, FaultState
from freshtoken.fakes._faults import (
    ACTION_KINDS,
    ACTION_TYPES,
    Action,
    AuthFailed200,
    CutStream,
    Delay,
    DropSessions,
    Expire,
    Fault,
    GarbageChunk,
    Match,
    Revoke,
    Rotate,
    SetResponseMode,
    Status5xx,
    Status400,
    Status401,
    Status403Scope,
)
from freshtoken.fakes._mcp_protocol import (
    HANDSHAKE_VERSIONS,
    MODERN_VERSIONS,
    RpcError,
    ToolContext,
)
from freshtoken.fakes._mcp_registry import PromptArgument, Registry
from freshtoken.fakes._mcp_server import AUTH_FAILURE_STYLES, FakeMCPServer
from freshtoken.fakes._oauth_app import FakeAuthorizationServer, oauth_application
from freshtoken.fakes._oauth_core import OAuthCore
from freshtoken.fakes._oauth_faults import TokenFault
from freshtoken.fakes._oauth_httpx2 import httpx2_transport
from freshtoken.fakes._oauth_models import (
    ClientRecord,
    CoreRequest,
    CoreResponse,
    SeenTokenRequest,
    TokenInfo,
    TokenPair,
    TokenPolicy,
)
from freshtoken.fakes._oauth_respx import mount_respx
from freshtoken.fakes._tls import FakeCA

__all__ = [
    "ACTION_KINDS",
    "ACTION_TYPES",
    "AUTH_FAILURE_STYLES",
    "HANDSHAKE_VERSIONS",
    "MODERN_VERSIONS",
    "Action",
    "AuthFailed200",
    "ClientRecord",
    "CoreRequest",
    "CoreResponse",
    "CutStream",
    "Delay",
    "DropSessions",
    "Expire",
    "FakeAuthorizationServer",
    "FakeCA",
    "FakeMCPServer",
    "Fault",
    "FaultPlan",
    "FaultState",
    "GarbageChunk",
    "ManualClock",
    "Match",
    "OAuthCore",
    "PromptArgument",
    "Registry",
    "Revoke",
    "Rotate",
    "RpcError",
    "SeenTokenRequest",
    "SetResponseMode",
    "Status5xx",
    "Status400",
    "Status401",
    "Status403Scope",
    "TokenFault",
    "TokenInfo",
    "TokenPair",
    "TokenPolicy",
    "ToolContext",
    "httpx2_transport",
    "mount_respx",
    "oauth_application",
]
