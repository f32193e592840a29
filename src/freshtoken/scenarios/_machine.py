"""A Hypothesis state machine that drives a client through token rotations and friends.

Hypothesis rules are synchronous; the fakes and clients are async. The machine therefore runs
one event loop in a background thread for its whole life. The client lives in one task on it,
from :meth:`RotationMachine.make_client` through every call to
:meth:`RotationMachine.close_client`: anyio-based clients (the official MCP SDK's) must enter and
exit their cancel scopes in one task. A rule hands that task its call and waits, moving the
manual clock whenever the call waits on it, so a hang on the clock is found without waiting in
real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from freshtoken._clock import ManualClock
from freshtoken._errors import InvariantViolation
from freshtoken._setup import REFRESHABLE_STYLES, AuthFailureStyle, ProtocolVersion, Setup
from freshtoken._threadloop import LoopThread
from freshtoken._timeline import Timeline
from freshtoken.fakes import (
    ACTION_TYPES,
    Action,
    CutStream,
    Expire,
    FakeAuthorizationServer,
    FakeMCPServer,
    Fault,
    Match,
    Revoke,
)
from freshtoken.proxy import tool_error_matcher
from freshtoken.scenarios._client import McpClient
from freshtoken.scenarios._clockwork import done_or_asleep
from freshtoken.scenarios._harness import DEFAULT_TARGET, Harness
from freshtoken.scenarios._model import (
    Advance,
    AuthorizationControl,
    Call,
    Initialize,
    Invariants,
    Join,
    McpFault,
    Scenario,
    Step,
    Stream,
)

__all__ = ["RotationMachine"]

T = TypeVar("T")

_AUTH_FAILURES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("status-401", {}),
    ("auth-failed-200", {"shape": "jsonrpc"}),
    ("auth-failed-200", {"shape": "posthog"}),
    ("auth-failed-200", {"shape": "tool-error"}),
)
# Real seconds closing the client and the fakes may take beyond ``step_timeout``.
_CLOSE_MARGIN = 5.0

_Job = tuple[Callable[[Any], Awaitable[Any]], "asyncio.Future[Any]"]


class RotationMachine(RuleBasedStateMachine):
    """Rotations, expiries, revocations, stream cuts and auth-failure styles against one client.

    The machine owns a :class:`~freshtoken.scenarios.Harness` (:attr:`harness`): a fake
    authorization server, a fake MCP server (validating bearers against it, on a shared
    :class:`~freshtoken.ManualClock` and :class:`~freshtoken.Timeline`) and the client under
    test. By default that client is freshtoken's proxy (reading tool-error text too, since the
    rules produce such failures) with the built-in MCP client behind it. To test your own
    client, subclass and override :meth:`make_client`, :meth:`call` and (if it needs closing)
    :meth:`close_client`; they run on the machine's event loop, all in one task, and can read
    :attr:`harness`, :attr:`auth_server`, :attr:`mcp_server`, :attr:`clock` and
    :attr:`timeline`. Enter the client's context managers on :attr:`client_stack`: it closes
    after :meth:`close_client`, in the same task.

    Invariants checked after every step: every call before a revocation ends with a result and
    every call after it ends promptly with an error; during each call the MCP server receives
    each request id at most twice (the send and one replay); the client never presents a
    superseded refresh token; and it makes at most one token request per invalidation
    (single-flight).

    A step that waits on the manual clock (a paced stream, a delayed answer) gets time moved
    for it, ``clock_step`` seconds whenever something sleeps on the clock; one that would need
    more than ``hang_after`` seconds of clock time is reported as a hang at once. A step stuck
    on anything else is a hang after ``step_timeout`` real seconds. A failure's message carries
    the timeline, and its notes the steps so far as a scenario file (:meth:`failing_scenario`).

    Use it as ``TestMyClient = MyMachine.TestCase`` in a test module.
    """

    protocol_version: ProtocolVersion = "2025-11-25"
    """The MCP revision the fake server speaks."""
    step_timeout = 10.0
    """Real seconds a step may take when it is not waiting on the manual clock."""
    hang_after = 300.0
    """Seconds of manual-clock time one step may need before the machine reports a hang."""
    clock_step = 1.0
    """How far the clock moves each time a step waits on it."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.timeline = Timeline(clock=self.clock)
        self.revoked = False
        self.calls = 0
        self.invalidations = 0
        self.client: Any = None
        self.client_stack = contextlib.AsyncExitStack()
        """Context managers the client needs, closed after :meth:`close_client` in its task."""
        self._fault_pending = False
        # Where each call's events start on the timeline: replays are counted per call.
        self._call_marks: list[int] = []
        # The steps so far in scenario form, and what no scenario step expresses.
        self._steps: list[Step] = [Initialize()]
        self._setup_changes: dict[str, Any] = {}
        self._untranslated: list[str] = []
        self._hung = False
        self._stack = contextlib.AsyncExitStack()
        self._thread = LoopThread("freshtoken-rotation-machine").start()
        try:
            self._thread.run(self._start(), timeout=self.step_timeout + _CLOSE_MARGIN)
        except BaseException:
            # The first error is the one to see; closing what did start is best effort.
            with contextlib.suppress(Exception):
                self._thread.run(self._close(), timeout=self.step_timeout + _CLOSE_MARGIN)
            self._thread.stop()
            raise

    # -- hooks for subclasses --------------------------------------------------------------

    async def make_client(self) -> Any:
        """Build the client under test (runs in the client's task; the fakes are already up).

        The default puts freshtoken's proxy in front of :attr:`mcp_server` with a refresh-token
        source at :attr:`auth_server`, and returns an initialized built-in client for the proxy.
        """
        proxy = await self.harness.start_proxy()
        client = await self.client_stack.enter_async_context(
            McpClient(
                proxy.local_url(DEFAULT_TARGET),
                timeline=self.timeline,
                protocol_version=self.protocol_version,
                verify=self.harness.verify,
            )
        )
        await client.initialize()
        return client

    async def call(self, client: Any, tool: str, arguments: Mapping[str, Any]) -> bool:
        """Call ``tool`` once through ``client``; True when the call ended with a result."""
        outcome = await client.call(tool, arguments, progress=tool == "stream")
        return bool(outcome.ok)

    async def close_client(self, client: Any) -> None:
        """Close what :meth:`make_client` built (:attr:`client_stack` closes right after)."""

    # -- plumbing ---------------------------------------------------------------------------

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the machine's loop (outside the client's task), moving the clock
        while it waits on it; a hang raises :class:`InvariantViolation`."""

        async def drive() -> T:
            return await self._drive(asyncio.ensure_future(coroutine))

        return self._thread.run(drive(), timeout=self.step_timeout + _CLOSE_MARGIN)

    def in_client(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``work(client)`` in the client's task and return its result, moving the clock
        while it waits on it; a hang raises :class:`InvariantViolation`."""

        async def submit() -> T:
            future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
            self._jobs.put_nowait((work, future))
            return await self._drive(future)

        try:
            return self._thread.run(submit(), timeout=self.step_timeout + _CLOSE_MARGIN)
        except InvariantViolation:
            raise
        except Exception as exc:
            exc.add_note(self._scenario_note())
            raise

    async def _start(self) -> None:
        self.harness = await self._stack.enter_async_context(
            Harness(
                Setup(protocol_version=self.protocol_version),
                clock=self.clock,
                timeline=self.timeline,
                proxy=False,
                # The rules include tool-error auth failures; the proxy opts in to reading them.
                proxy_options={"matcher": tool_error_matcher},
            )
        )
        self.auth_server: FakeAuthorizationServer = self.harness.authorization_server
        self.mcp_server: FakeMCPServer = self.harness.mcp_server
        self._jobs: asyncio.Queue[_Job | None] = asyncio.Queue()
        ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._client_task = asyncio.ensure_future(self._client_life(ready))
        self.client = await self._drive(ready)

    async def _client_life(self, ready: asyncio.Future[Any]) -> None:
        # The client's one task: built, called and closed here, so its cancel scopes and task
        # groups are entered and left where they belong.
        async with self.client_stack:
            try:
                client = await self.make_client()
            except Exception as exc:
                ready.set_exception(exc)
                return
            ready.set_result(client)
            try:
                while (job := await self._jobs.get()) is not None:
                    work, future = job
                    try:
                        result = await work(client)
                    except Exception as exc:
                        if not future.done():
                            future.set_exception(exc)
                    else:
                        if not future.done():
                            future.set_result(result)
            finally:
                await self.close_client(client)

    async def _drive(self, future: asyncio.Future[T]) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.step_timeout
        started = self.clock.time()
        while not future.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                self._hung = True
                raise self._violation(
                    f"step did not finish within {self.step_timeout} s (a hang, not on the clock)"
                )
            watched: set[asyncio.Future[Any]] = {future, self._client_task}
            _, slept = await done_or_asleep(self.clock, watched, timeout=remaining)
            if future.done():
                break
            if self._client_task.done():
                # The client's task ended (make_client or close_client raised): say so.
                self._client_task.result()
                raise self._violation("the client's task ended in the middle of a step")
            if slept:
                if self.clock.time() + self.clock_step - started > self.hang_after:
                    self._hung = True
                    raise self._violation(
                        f"step still waiting after {self.hang_after:g} s on the manual clock "
                        "(a hang)"
                    )
                self.clock.advance(self.clock_step)
        return future.result()

    async def _close(self) -> None:
        try:
            task = getattr(self, "_client_task", None)
            if task is not None and not task.done():
                if self._hung:
                    # The client's task is stuck in a call: cancel it; close_client still runs.
                    task.cancel()
                else:
                    self._jobs.put_nowait(None)
                done, _ = await asyncio.wait({task}, timeout=self.step_timeout)
                if not done:
                    task.cancel()
                    await asyncio.wait({task}, timeout=_CLOSE_MARGIN)
            if task is not None and task.done() and not task.cancelled():
                task.result()
        finally:
            await self._stack.aclose()

    def teardown(self) -> None:
        """Close the client (in its task) and the fakes, stop the loop; a fake's own error is
        re-raised."""
        try:
            self._thread.run(self._close(), timeout=2 * self.step_timeout + _CLOSE_MARGIN)
        finally:
            self._thread.stop()

    # -- the failing example as a scenario file -----------------------------------------------

    def failing_scenario(self) -> Scenario:
        """The steps so far as a :class:`Scenario`, checked against the machine's invariants:
        save ``failing_scenario().to_toml()`` into a directory for ``--freshtoken-catalogue-dir``.
        """
        name = re.sub(r"(?<!^)(?=[A-Z])", "-", type(self).__name__).lower()
        setup = Setup(protocol_version=self.protocol_version, **self._setup_changes)
        return Scenario(
            name=f"{name}-example",
            title=f"A failing example {type(self).__name__} found",
            steps=tuple(self._steps),
            setup=setup,
            invariants=Invariants(max_token_requests=1 + self.invalidations),
        )

    def _scenario_note(self) -> str:
        scenario = self.failing_scenario()
        lines = [
            f"freshtoken: these steps as a scenario file (save as DIR/{scenario.name}.toml, "
            "run with --freshtoken-catalogue-dir DIR):",
            *(f"# {text}" for text in self._untranslated),
            scenario.to_toml().rstrip(),
        ]
        return "\n".join(lines)

    def _violation(self, message: str) -> InvariantViolation:
        error = InvariantViolation(f"{message}\n{self.timeline.format()}")
        error.add_note(self._scenario_note())
        return error

    # -- rules ------------------------------------------------------------------------------

    def _call(self, tool: str, arguments: Mapping[str, Any]) -> None:
        call = Call(
            tool=tool, arguments=dict(arguments), expect="error" if self.revoked else "result"
        )
        self._steps.append(call)
        self._calling()
        ok = self.in_client(lambda client: self.call(client, tool, arguments))
        if self.revoked:
            if ok:
                raise self._violation(f"call {tool!r} succeeded after its grant was revoked")
        elif not ok:
            raise self._violation(f"call {tool!r} did not end with a result")

    def _calling(self) -> None:
        self.calls += 1
        self._call_marks.append(self.timeline.next_seq)
        self._fault_pending = False

    @rule(text=st.sampled_from(["hello", "again"]))
    def call_echo(self, text: str) -> None:
        """An ordinary tool call."""
        self._call("echo", {"text": text})

    @precondition(lambda self: not self.revoked)
    @rule(count=st.integers(1, 3), cut_after=st.none() | st.integers(1, 2))
    def call_stream(self, count: int, cut_after: int | None) -> None:
        """A progress-streaming call, optionally cut after a few events (then resumed)."""
        if cut_after is not None and cut_after < count:
            fault = Fault(Match(tool="stream", sse_event=cut_after), CutStream())
            self._steps.append(McpFault(fault))
            self.mcp_server.faults.add(fault)
        self._steps += [Stream(count=count, pace=1.0), Join()]
        self._calling()
        arguments = {"count": count, "pace": 1.0}
        if not self.in_client(lambda client: self.call(client, "stream", arguments)):
            raise self._violation("stream call did not end with a result")

    @precondition(lambda self: not self.revoked)
    @rule()
    def rotate(self) -> None:
        """The authorization server invalidates every access token now."""
        self._steps.append(AuthorizationControl("rotate"))
        self.invalidations += 1
        self.auth_server.rotate()

    def _arm(self, action: Action) -> None:
        # One request fault at a time: two on one call would also fail its replay (or race each
        # other), and passing that second failure back is correct behaviour, not a bug.
        fault = Fault(Match(rpc_method="tools/call"), action)
        self._steps.append(McpFault(fault))
        self.invalidations += 1
        self._fault_pending = True
        self.mcp_server.faults.add(fault)

    @precondition(lambda self: not self.revoked and not self._fault_pending)
    @rule()
    def expire_next_bearer(self) -> None:
        """The next call's bearer expires as it arrives."""
        self._arm(Expire())

    @precondition(lambda self: not self.revoked)
    @rule(seconds=st.sampled_from([60.0, 3600.0]))
    def advance_clock(self, seconds: float) -> None:
        """Time passes, possibly past the access token's lifetime."""
        self._steps.append(Advance(seconds=seconds))
        self.invalidations += 1
        self.clock.advance(seconds)

    @precondition(lambda self: not self.revoked and not self._fault_pending)
    @rule(failure=st.sampled_from(_AUTH_FAILURES))
    def fail_next_call(self, failure: tuple[str, dict[str, Any]]) -> None:
        """The next call meets one auth failure (a 401, or a 200 whose body says auth failed)."""
        kind, params = failure
        self._arm(ACTION_TYPES[kind](**params))

    @rule(style=st.sampled_from(REFRESHABLE_STYLES))
    def switch_auth_failure_style(self, style: AuthFailureStyle) -> None:
        """The MCP server starts reporting invalid tokens another way."""
        if self.calls == 0:
            # Before any call this is the server's setting from the start.
            self._setup_changes["auth_failure_style"] = style
        else:
            self._untranslated.append(
                f"before step {len(self._steps) + 1} the MCP server switched to "
                f"auth_failure_style = {style!r} (no scenario step does that)"
            )
        self.mcp_server.auth_failure_style = style

    @precondition(lambda self: not self.revoked and not self._fault_pending)
    @rule()
    def revoke(self) -> None:
        """The next call's grant is revoked: it and every later call must fail promptly,
        without a refresh storm."""
        self.revoked = True
        self._arm(Revoke())

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def no_refresh_token_reuse(self) -> None:
        """A superseded refresh token is never presented."""
        if self.timeline.count(actor="as", kind="refresh.reuse"):
            raise self._violation("refresh-token reuse")

    @invariant()
    def at_most_one_replay_per_call(self) -> None:
        """The MCP server receives each call (each JSON-RPC id it saw during that call) at most
        twice: the send and one replay."""
        marks = [*self._call_marks, self.timeline.next_seq]
        for start, end in itertools.pairwise(marks):
            sends: Counter[str | None] = Counter(
                e.request_id
                for e in self.timeline.select(actor="mcp", kind="request", since=start)
                # Resuming a cut stream is a GET, not a resend of the call.
                if e.seq < end
                and e.detail.get("rpc_method") == "tools/call"
                and e.detail.get("http_method") == "POST"
            )
            replayed = {rid: n for rid, n in sends.items() if n > 2}
            if replayed:
                raise self._violation(
                    f"request id(s) sent upstream more than twice in one call: {replayed}"
                )

    @invariant()
    def one_refresh_per_invalidation(self) -> None:
        """Single-flight: no more token requests than invalidations (plus the first fetch)."""
        if self.auth_server.token_requests > 1 + self.invalidations:
            raise self._violation(
                f"{self.auth_server.token_requests} token requests for {self.invalidations} "
                "invalidations"
            )
