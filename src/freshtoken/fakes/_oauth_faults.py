"""Token-endpoint faults: what the next N token requests meet instead of (or before) a grant."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Annotated, Final

from pydantic import Field, StrictInt, model_validator

from freshtoken._schema import Flag, PositiveCount, Seconds
from freshtoken.fakes._oauth_models import NO_STORE, CoreResponse, json_response
from freshtoken.fakes._spec import Spec

__all__ = ["HttpStatus", "TokenFault", "TokenFaultQueue"]

HttpStatus = Annotated[StrictInt, Field(ge=100, le=599)]
"""An HTTP status code: a whole number in 100..599."""

_GARBAGE: Final = b'{"access_token": "\x00\xff<html><body>502 Bad Gateway</bo'


class TokenFault(Spec):
    """A fault for the next ``times`` token-endpoint requests.

    It answers ``status`` with an RFC 6749 error body for ``error`` (a plain-text body when
    ``error`` is None), after ``delay`` seconds on the server's clock. ``reset`` drops the
    connection instead; ``garbage`` answers ``status`` with a body that is not JSON.
    ``lose_response`` processes the grant as usual (a refresh token rotates) and then drops the
    connection before answering: how a client loses the only copy of its new refresh token. A
    fault with a status below 400 (and none of those three) lets the request through normally
    and only delays the answer.
    """

    times: PositiveCount = 1
    status: HttpStatus = 503
    error: str | None = "temporarily_unavailable"
    delay: Seconds = 0.0
    reset: Flag = False
    garbage: Flag = False
    lose_response: Flag = False

    @model_validator(mode="after")
    def _one_way_to_fail(self) -> TokenFault:
        if sum((self.reset, self.garbage, self.lose_response)) > 1:
            raise ValueError("reset, garbage and lose_response exclude each other")
        return self

    @property
    def passes_through(self) -> bool:
        """A fault with a success status only delays an otherwise normal answer."""
        return self.status < 400 and not self.reset and not self.garbage and not self.lose_response

    @property
    def what(self) -> str:
        """How the fault shows on the timeline: reset, garbage, lost-response, delay or status."""
        if self.lose_response:
            return "lost-response"
        if self.reset:
            return "reset"
        if self.garbage:
            return "garbage"
        return "delay" if self.passes_through else "status"

    def response(self) -> CoreResponse:
        """The answer a request meeting this fault gets (for a fault that does not pass through)."""
        if self.reset:
            return CoreResponse(0, delay=self.delay, reset=True)
        if self.garbage:
            headers = {"Content-Type": "application/json", **NO_STORE}
            return CoreResponse(self.status, headers, _GARBAGE, delay=self.delay)
        if self.error is None:
            headers = {"Content-Type": "text/plain; charset=utf-8"}
            return CoreResponse(self.status, headers, b"injected fault", delay=self.delay)
        body = {"error": self.error, "error_description": "injected fault"}
        response = json_response(self.status, body, dict(NO_STORE))
        response.delay = self.delay
        return response


@dataclass(slots=True)
class _Queued:
    fault: TokenFault
    remaining: int
    must_fire: bool = True


class TokenFaultQueue:
    """Queued token faults and how many requests each still affects (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[_Queued] = deque()

    def add(self, fault: TokenFault, *, must_fire: bool = True) -> None:
        with self._lock:
            self._queue.append(_Queued(fault, fault.times, must_fire))

    def next(self) -> TokenFault | None:
        """The fault the next token request meets (counted as used), or None."""
        with self._lock:
            if not self._queue:
                return None
            queued = self._queue[0]
            queued.remaining -= 1
            if queued.remaining == 0:
                self._queue.popleft()
            return queued.fault

    def unfired(self) -> list[TokenFault]:
        """The queued faults no request has met yet, but those added with ``must_fire=False``."""
        with self._lock:
            return [
                queued.fault
                for queued in self._queue
                if queued.must_fire and queued.remaining == queued.fault.times
            ]

    @property
    def pending(self) -> int:
        """How many token requests the queued faults will still affect."""
        with self._lock:
            return sum(queued.remaining for queued in self._queue)
