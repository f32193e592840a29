"""SSE streams and sessions of the fake MCP server.

A stream outlives the HTTP response that carried it: its producer keeps appending
events after a cut, so a ``GET`` with ``Last-Event-ID`` can replay what was missed.
Event ids are ``"<stream>-<position>"`` (position 0 is the priming event). A session keeps only
its newest finished streams, so a long run holds a bounded number of them.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Final

from freshtoken.fakes._mcp_protocol import PeerState

__all__ = ["MAX_STREAMS_PER_SESSION", "Session", "Stream", "format_event", "parse_event_id"]

MAX_STREAMS_PER_SESSION: Final = 32
"""Finished streams a session keeps for resumption beyond those still running."""


def format_event(event_id: str | None, message: Any) -> bytes:
    """One ``event: message`` SSE frame carrying a JSON-RPC message."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: message\ndata: {json.dumps(message, separators=(',', ':'))}\n\n".encode()


def parse_event_id(value: str) -> tuple[str, int] | None:
    """Split ``"<stream>-<position>"``; ``None`` when the id is not one this server minted."""
    stream, sep, position = value.rpartition("-")
    if not sep or not stream or not position.isdigit():
        return None
    return stream, int(position)


class Stream:
    """An append-only list of messages with waiters; the producer side of one SSE stream."""

    def __init__(self, stream_id: str, *, rpc_method: str | None, tool: str | None) -> None:
        self.id = stream_id
        self.rpc_method = rpc_method
        self.tool = tool
        self.messages: list[Any] = []
        self.done = False
        self.aborted = False
        self.closes = 0
        """How often the server asked the responses carrying it to end (SEP-1699 polling)."""
        self.producer: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def event_id(self, position: int) -> str:
        return f"{self.id}-{position}"

    def append(self, message: Any) -> None:
        self.messages.append(message)
        self._wake()

    def finish(self) -> None:
        self.done = True
        self._wake()

    def close_responses(self) -> None:
        """End the HTTP responses writing this stream now; the stream itself goes on."""
        self.closes += 1
        self._wake()

    def abort(self) -> None:
        """End the stream for every reader and stop its producer (session gone, server closing)."""
        self.aborted = True
        self.done = True
        if self.producer is not None:
            self.producer.cancel()
        self._wake()

    async def wait_beyond(self, count: int, closes: int | None = None) -> bool:
        """Wait until more than ``count`` messages exist (True), or the stream ends or its
        responses are asked to close (``closes`` changed) (False)."""
        while len(self.messages) <= count:
            if self.done or (closes is not None and closes != self.closes):
                return False
            if self._waiter is None or self._waiter.done():
                self._waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._waiter)
        return not self.aborted

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


@dataclass(slots=True)
class Session:
    """One ``Mcp-Session-Id``: what the client told the server, the streams opened under it and
    the standalone GET stream, if one is open."""

    id: str
    protocol_version: str
    state: PeerState = field(default_factory=PeerState)
    streams: dict[str, Stream] = field(default_factory=dict)
    standalone: Stream | None = None

    def add(self, stream: Stream, *, keep: int = MAX_STREAMS_PER_SESSION) -> None:
        """Remember ``stream`` for resumption, forgetting the oldest finished ones beyond ``keep``."""
        self.streams[stream.id] = stream
        if len(self.streams) <= keep:
            return
        for stream_id, old in list(self.streams.items()):
            if len(self.streams) <= keep:
                break
            if old.done and old is not stream:
                del self.streams[stream_id]

    def close(self) -> None:
        for stream in self.streams.values():
            stream.abort()
