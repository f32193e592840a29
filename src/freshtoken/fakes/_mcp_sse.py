"""The fake MCP server's SSE writer: events, priming, resumable streams, stream faults, and
re-checking the bearer while a stream runs."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Final

from aiohttp import web

from freshtoken._serve import reset_connection
from freshtoken.fakes._fault_plan import FaultState
from freshtoken.fakes._faults import (
    TERMINAL_ACTION_KINDS,
    AuthFailed200,
    CutStream,
    GarbageChunk,
    SetResponseMode,
)
from freshtoken.fakes._mcp_base import ACTOR, SSE_HEADERS, Exchange, McpServerBase
from freshtoken.fakes._mcp_protocol import auth_failure_message
from freshtoken.fakes._mcp_streams import Stream, format_event

__all__ = ["SseWriter"]

_GARBAGE: Final = b"\xff\xfe\x00garbage\x01 not an event\n\n"


class SseWriter(McpServerBase):
    """Writes a :class:`Stream` as SSE, applying the stream faults armed for the request."""

    def _open_stream(self, ex: Exchange) -> Stream:
        stream = Stream(str(next(self._streams)), rpc_method=ex.rpc_method, tool=ex.tool)
        if ex.session is not None:
            ex.session.add(stream, keep=self._max_streams)
        return stream

    async def _write_stream(
        self,
        ex: Exchange,
        stream: Stream,
        *,
        start: int,
        priming: bool,
        headers: Mapping[str, str] | None = None,
    ) -> web.StreamResponse:
        """Write ``stream`` from message index ``start`` as SSE, applying stream faults and stream auth."""
        response = web.StreamResponse(status=200, headers={**SSE_HEADERS, **(headers or {})})
        position = start
        written = 0
        try:
            await response.prepare(ex.request)
            self.timeline.record(
                ACTOR,
                "response",
                request_id=ex.request_id,
                status=200,
                mode="sse",
                http_method=ex.http_method,
            )
            if priming:
                await response.write(
                    f"id: {stream.event_id(position)}\nretry: {self._retry_ms}\ndata: \n\n".encode()
                )
            closes = stream.closes
            while True:
                for fault in self.faults.fire_on_stream(ex.armed, written):
                    if await self._fire_on_stream(ex, stream, response, fault):
                        return response
                more = await stream.wait_beyond(position, closes)
                if stream.closes != closes:
                    # SEP-1699 polling: the response ends, the stream goes on for a resumption.
                    self.timeline.record(
                        ACTOR, "sse.closed", request_id=ex.request_id, stream=stream.id
                    )
                    await response.write_eof()
                    return response
                if not more:
                    break
                if self.stream_auth != "start" and not await self._still_authorized(ex):
                    if self.stream_auth == "cut":
                        await self._cut(ex, stream, response, "close")
                        return response
                    error = auth_failure_message(
                        "jsonrpc", ex.rpc_id, ex.rpc_method, "token no longer valid"
                    )
                    await response.write(format_event(None, error))
                    self._end_stream(ex, stream)
                    break
                position += 1
                written += 1
                event_id = stream.event_id(position)
                await response.write(format_event(event_id, stream.messages[position - 1]))
                self.timeline.record(
                    ACTOR,
                    "sse.event",
                    request_id=ex.request_id,
                    stream=stream.id,
                    event_id=event_id,
                    n=position,
                )
            await response.write_eof()
        except ConnectionError:
            self._client_gone(ex, stream)
        except asyncio.CancelledError:
            self._client_gone(ex, stream)
            raise
        return response

    def _client_gone(self, ex: Exchange, stream: Stream) -> None:
        self.timeline.record(ACTOR, "stream.cancelled", request_id=ex.request_id, stream=stream.id)
        self._end_stream(ex, stream)

    async def _still_authorized(self, ex: Exchange) -> bool:
        if self._validator is None or ex.token is None:
            return True
        verdict = await self._validator.check(ex.token)
        if not verdict.valid:
            self.timeline.record(
                ACTOR,
                "auth.rejected",
                request_id=ex.request_id,
                token=ex.token,
                status=200,
                style=f"stream-{self.stream_auth}",
                reason=verdict.reason,
            )
        return verdict.valid

    def _end_stream(self, ex: Exchange, stream: Stream) -> None:
        """The response carrying ``stream`` is gone: stateless requests die with it."""
        if self._modern or ex.session is None:
            stream.abort()

    async def _fire_on_stream(
        self, ex: Exchange, stream: Stream, response: web.StreamResponse, fault: FaultState
    ) -> bool:
        """Apply one due stream fault; True when it ended the response."""
        action = fault.fault.action
        self.timeline.record(
            ACTOR,
            "fault",
            request_id=ex.request_id,
            token=ex.token,
            action=action.kind,
            stream=stream.id,
            **action.params,
        )
        if isinstance(action, GarbageChunk):
            await response.write(_GARBAGE)
            return False
        if isinstance(action, CutStream):
            await self._cut(ex, stream, response, action.mode)
            return True
        if action.kind in TERMINAL_ACTION_KINDS:
            # Mid-stream, every terminal action becomes an auth error event.
            shape = action.shape if isinstance(action, AuthFailed200) else "jsonrpc"
            error = auth_failure_message(shape, ex.rpc_id, ex.rpc_method, "invalid_token (fault)")
            await response.write(format_event(None, error))
            await response.write_eof()
            self._end_stream(ex, stream)
            return True
        if not isinstance(action, SetResponseMode):
            await self._side_effect(action, ex.token)
        return False

    async def _cut(
        self, ex: Exchange, stream: Stream, response: web.StreamResponse, mode: str
    ) -> None:
        self.timeline.record(
            ACTOR, "sse.cut", request_id=ex.request_id, stream=stream.id, mode=mode
        )
        self._end_stream(ex, stream)
        if mode == "close":
            await response.write_eof()
            return
        reset_connection(ex.request)
