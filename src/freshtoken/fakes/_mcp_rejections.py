"""How the fake MCP server refuses a request: bearer checks and every auth-failure style
(401 with RFC 6750/9728 challenges, 200 with an auth error in several real-world shapes, 403
insufficient_scope, 400, 500), and the terminal fault actions that answer the same way."""

from __future__ import annotations

from aiohttp import web

from freshtoken.fakes._faults import (
    Action,
    AuthFailed200,
    Status5xx,
    Status400,
    Status401,
    Status403Scope,
)
from freshtoken.fakes._mcp_auth import BearerCheck
from freshtoken.fakes._mcp_base import ACTOR, DEFAULT_SCOPE, Answered, Exchange, accepts
from freshtoken.fakes._mcp_protocol import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    RpcError,
    auth_failure_message,
    error_message,
)
from freshtoken.fakes._mcp_sse import SseWriter
from freshtoken.fakes._mcp_streams import Stream

__all__ = ["Rejections"]


class Rejections(SseWriter):
    """Bearer checks and auth-failure answers in the server's configured style."""

    async def _authorize(self, ex: Exchange) -> None:
        if self._validator is None:
            return
        if ex.token is None:
            verdict = BearerCheck(False, "missing bearer token")
        else:
            verdict = await self._validator.check(ex.token)
        if not verdict.valid:
            raise Answered(
                await self._reject(
                    ex, self.auth_failure_style, verdict.reason, missing=ex.token is None
                )
            )
        if self._required_scopes and not self._required_scopes <= verdict.scopes:
            raise Answered(await self._reject(ex, "403-scope", "insufficient_scope"))

    async def _reject(
        self,
        ex: Exchange,
        style: str,
        reason: str,
        *,
        missing: bool = False,
        scope: str | None = None,
    ) -> web.StreamResponse:
        status = {"401": 401, "403-scope": 403, "400": 400, "500": 500}.get(style, 200)
        self.timeline.record(
            ACTOR,
            "auth.rejected",
            request_id=ex.request_id,
            token=ex.token,
            status=status,
            style=style,
            reason=reason,
        )
        metadata = f'resource_metadata="{self.resource_metadata_url}"'
        if style == "401":
            challenge = (
                f"Bearer {metadata}"
                if missing
                else f'Bearer error="invalid_token", error_description="{reason}", {metadata}'
            )
            body = {"error": "invalid_token", "error_description": reason}
            return self._json(ex, 401, body, headers={"WWW-Authenticate": challenge})
        if style == "403-scope":
            wanted = scope or " ".join(sorted(self._required_scopes)) or DEFAULT_SCOPE
            challenge = f'Bearer error="insufficient_scope", scope="{wanted}", {metadata}'
            body = {"error": "insufficient_scope", "error_description": reason, "scope": wanted}
            return self._json(ex, 403, body, headers={"WWW-Authenticate": challenge})
        if style == "400":
            return self._json(
                ex,
                400,
                error_message(ex.rpc_id, RpcError(INVALID_REQUEST, f"Bad Request: {reason}")),
            )
        if style == "500":
            return self._json(
                ex,
                500,
                error_message(ex.rpc_id, RpcError(INTERNAL_ERROR, f"Internal error: {reason}")),
            )
        message = auth_failure_message(style.removeprefix("200-"), ex.rpc_id, ex.rpc_method, reason)
        if ex.mode == "sse" and accepts(ex.request)[1] and ex.http_method == "POST":
            stream = Stream(f"x{next(self._streams)}", rpc_method=ex.rpc_method, tool=ex.tool)
            stream.append(message)
            stream.finish()
            return await self._write_stream(ex, stream, start=0, priming=self._priming)
        return self._json(ex, 200, message)

    async def _terminal(self, ex: Exchange, action: Action) -> web.StreamResponse:
        """The answer of a terminal fault action (one of the auth-failure styles, or a 5xx)."""
        if isinstance(action, Status401):
            return await self._reject(ex, "401", "invalid_token (fault)")
        if isinstance(action, AuthFailed200):
            return await self._reject(ex, f"200-{action.shape}", "invalid_token (fault)")
        if isinstance(action, Status403Scope):
            return await self._reject(
                ex, "403-scope", "insufficient_scope (fault)", scope=action.scope
            )
        if isinstance(action, Status400):
            return await self._reject(ex, "400", "invalid_token (fault)")
        if not isinstance(action, Status5xx):
            raise TypeError(f"{action.kind!r} is not a terminal action")
        return self._json(
            ex,
            action.status,
            error_message(ex.rpc_id, RpcError(INTERNAL_ERROR, f"upstream failure {action.status}")),
        )
