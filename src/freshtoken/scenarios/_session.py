"""What a subject sees of a run, and what it offers the runner.

A :class:`Subject` turns the running fakes (:class:`Environment`) into a :class:`SubjectSession`,
which plays the scenario's steps through a :class:`Play`. In-process subjects call
:meth:`Play.client_step` with an :class:`~freshtoken.scenarios.McpClient`; the ``command``
subject relays an external program's control requests (:meth:`Play.runner_step`,
:meth:`Play.report_call`, :meth:`Play.client_event`).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from freshtoken._clock import ManualClock
from freshtoken._timeline import Timeline
from freshtoken.scenarios._client import McpClient
from freshtoken.scenarios._harness import Harness
from freshtoken.scenarios._model import Scenario, Step
from freshtoken.scenarios._tokens import Credentials

__all__ = [
    "ClientSession",
    "CommandRun",
    "Environment",
    "Play",
    "ProtocolViolation",
    "Subject",
    "SubjectSession",
]


@dataclass(frozen=True)
class Environment:
    """The running fakes as a subject sees them: URLs, credentials, CA, clock and timeline.

    ``access_token``/``refresh_token`` were freshly issued by the fake authorization server for
    this run, for ``scope`` and the RFC 8707 ``resource`` the MCP server's metadata advertises
    (``expires_at``, on ``clock``, when the server reported ``expires_in``); ``ca_path``/
    ``client_ssl`` are set when the scenario runs over TLS. ``harness`` built it all (a subject
    starts freshtoken's proxy through it).
    """

    scenario: Scenario
    harness: Harness
    mcp_url: str
    token_endpoint: str
    client_id: str
    client_secret: str
    access_token: str
    refresh_token: str | None
    timeline: Timeline
    clock: ManualClock
    ca_path: str | None = None
    client_ssl: ssl.SSLContext | None = None
    expires_at: float | None = None
    scope: str | None = None
    resource: str | None = None
    issuer: str = ""

    @classmethod
    def of(cls, scenario: Scenario, harness: Harness) -> Environment:
        """The environment of a running ``harness`` (its fakes started, on a manual clock)."""
        if not isinstance(harness.clock, ManualClock):
            raise TypeError("scenarios run on a ManualClock; the harness has another clock")
        authorization, pair = harness.authorization_server, harness.seeded
        return cls(
            scenario=scenario,
            harness=harness,
            mcp_url=harness.mcp_server.url,
            token_endpoint=authorization.token_endpoint,
            client_id=authorization.client_id,
            client_secret=authorization.client_secret,
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            timeline=harness.timeline,
            clock=harness.clock,
            ca_path=str(harness.ca.ca_path) if harness.ca is not None else None,
            client_ssl=harness.client_ssl,
            expires_at=harness.seeded_expires_at(),
            scope=pair.scope,
            resource=harness.mcp_server.url,
            issuer=authorization.issuer,
        )

    @property
    def verify(self) -> ssl.SSLContext | bool:
        return self.client_ssl if self.client_ssl is not None else True

    def credentials(self) -> Credentials:
        return Credentials(
            token_endpoint=self.token_endpoint,
            client_id=self.client_id,
            client_secret=self.client_secret,
            access_token=self.access_token,
            refresh_token=self.refresh_token,
            verify=self.verify,
        )


class ProtocolViolation(ValueError):
    """An external client broke the command protocol; ``status`` is the HTTP answer it gets."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class CommandRun:
    """How an external client's process ended, and what it printed (stdout and stderr
    interleaved, the newest ``output`` kept; ``dropped`` older bytes were not)."""

    argv0: str
    pid: int
    status: int | None
    timed_out: bool = False
    cancelled: bool = False
    output: str = ""
    dropped: int = 0
    clock: str = "system"
    violations: tuple[str, ...] = ()
    """Control requests the runner refused (each breaks the command protocol)."""

    def tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of output."""
        return "\n".join(self.output.rstrip().splitlines()[-lines:])


class Play(Protocol):
    """What the runner offers a session: run a step, or record what an external client saw."""

    @property
    def steps(self) -> Sequence[Step]: ...

    async def client_step(self, index: int, client: McpClient) -> None:
        """Run client step ``index`` with ``client``."""
        ...

    async def runner_step(self, index: int) -> None:
        """Run a fault, clock, wait or restart step (or, for an external client, a ``join``)."""
        ...

    def check_runner_step(self, index: int) -> None:
        """Raise :class:`ProtocolViolation` if an external client may not have runner step
        ``index`` run now (not a runner step, out of order, client steps before it unreported)."""
        ...

    def report_call(self, index: int, report: Mapping[str, Any]) -> int:
        """Record how an external client's call for step ``index`` ended (one report per call;
        a burst of n takes n); return how many reports the step still expects.

        Raises :class:`ProtocolViolation` for a report the step cannot take."""
        ...

    def client_event(self, name: str, step: int | None, detail: Mapping[str, Any]) -> int:
        """Record a client-side event an external client saw (what ``wait`` steps on the
        ``client`` actor wait for); return its timeline number."""
        ...

    def command_ran(self, run: CommandRun) -> None:
        """Record how the external client's process ended."""
        ...

    def client_started(self, seconds: float) -> None:
        """Record how long the external client took to start (to its first control request):
        time that does not count against the scenario's ``max_duration``."""
        ...


class SubjectSession(Protocol):
    """One run of a subject: plays the steps, then is closed by its context manager."""

    async def play(self, play: Play) -> None: ...


class Subject(Protocol):
    """A named thing under test.

    A subject may also have a ``profile`` (a
    :class:`~freshtoken.scenarios.SubjectProfile`: the roles it is judged in, the MCP revisions
    it speaks, whether it sees the scenario's clock); one without is judged by every scenario.
    """

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    def session(self, env: Environment) -> AbstractAsyncContextManager[SubjectSession]: ...


class ClientSession:
    """The session of an in-process subject that plays through one built-in client: its client
    steps go through ``client``, the runner steps to the runner, in order."""

    def __init__(self, client: McpClient) -> None:
        self.client = client

    async def play(self, play: Play) -> None:
        for index, step in enumerate(play.steps):
            if step.client_step:
                await play.client_step(index, self.client)
            else:
                await play.runner_step(index)
