"""A Hypothesis state machine that drives a client through token rotations and friends.

Hypothesis rules are synchronous; the fakes and clients are asyncio. The machine therefore runs
one event loop in a background thread for its whole life and hands every coroutine to it with
:func:`asyncio.run_coroutine_threadsafe`, waiting a bounded time for each.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections import Counter
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from freshtoken._clock import ManualClock
from freshtoken._errors import InvariantViolation
from freshtoken._setup import REFRESHABLE_STYLES, AuthFailureStyle, ProtocolVersion, Setup
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
from freshtoken.scenarios._clockwork import drive_clock
from freshtoken.scenarios._harness import Harness

__all__ = ["RotationMachine"]

T = TypeVar("T")

_AUTH_FAILURES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("status-401", {}),
    ("auth-failed-200", {"shape": "jsonrpc"}),
    ("auth-failed-200", {"shape": "posthog"}),
    ("auth-failed-200", {"shape": "tool-error"}),
)


class RotationMachine(RuleBasedStateMachine):
    """Rotations, expiries, revocations, stream cuts and auth-failure styles against one client.

    The machine owns a :class:`~freshtoken.scenarios.Harness` (:attr:`harness`): a fake
    authorization server, a fake MCP server (validating bearers against it, on a shared
    :class:`~freshtoken.ManualClock` and :class:`~freshtoken.Timeline`) and the client under
    test. By default that client is freshtoken's proxy (reading tool-error text too, since the
    rules produce such failures) with the built-in MCP client behind it. To test your own
    client, subclass and override :meth:`make_client`, :meth:`call` and (if it needs closing)
    :meth:`close_client`; they run on the machine's event loop and can read :attr:`auth_server`,
    :attr:`mcp_server`, :attr:`clock` and :attr:`timeline`.

    Invariants checked after every step: every call before a revocation ends with a result and
    every call after it ends promptly with an error; during each call the MCP server receives
    each request id at most twice (the send and one replay); the client never presents a
    superseded refresh token; and it makes at most one token request per invalidation
    (single-flight).

    Use it as ``TestMyClient = MyMachine.TestCase`` in a test module.
    """

    protocol_version: ProtocolVersion = "2025-11-25"
    """The MCP revision the fake server speaks."""
    step_timeout = 10.0
    """Real seconds any one step may take before the machine reports a hang."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.timeline = Timeline(clock=self.clock)
        self.revoked = False
        self.calls = 0
        self.invalidations = 0
        self._fault_pending = False
        # Where each call's events start on the timeline: replays are counted per call.
        self._call_marks: list[int] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="freshtoken-rotation-machine", daemon=True
        )
        self._thread.start()
        self._stack = contextlib.AsyncExitStack()
        try:
            self.client = self.run(self._start())
        except BaseException:
            self._stop_loop()
            raise

    # -- hooks for subclasses --------------------------------------------------------------

    async def make_client(self) -> Any:
        """Build the client under test (runs on the machine's loop; the fakes are already up).

        The default puts freshtoken's proxy in front of :attr:`mcp_server` with a refresh-token
        source at :attr:`auth_server`, and returns an initialized built-in client for the proxy.
        Register anything that needs closing with :meth:`close_client`.
        """
        proxy = await self.harness.start_proxy()
        url = proxy.local_url("mcp")
        client = await self._stack.enter_async_context(
            McpClient(url, timeline=self.timeline, protocol_version=self.protocol_version)
        )
        await client.initialize()
        return client

    async def call(self, client: Any, tool: str, arguments: Mapping[str, Any]) -> bool:
        """Call ``tool`` once through ``client``; True when the call ended with a result."""
        outcome = await client.call(tool, arguments, progress=tool == "stream")
        return bool(outcome.ok)

    async def close_client(self, client: Any) -> None:
        """Close what :meth:`make_client` built (the default's parts close with the machine)."""

    # -- plumbing ---------------------------------------------------------------------------

    def run(self, coroutine: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
        """Run ``coroutine`` on the machine's loop; wait at most ``timeout`` (``step_timeout``)."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        bound = self.step_timeout if timeout is None else timeout
        try:
            return future.result(bound)
        except TimeoutError:
            future.cancel()
            raise InvariantViolation(
                f"step did not finish within {bound} s (a hang)\n{self.timeline.format()}"
            ) from None

    async def _start(self) -> Any:
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
        return await self.make_client()

    async def _close(self) -> None:
        try:
            await self.close_client(self.client)
        finally:
            await self._stack.aclose()

    async def _drain(self) -> None:
        current = asyncio.current_task()
        leftovers = [task for task in asyncio.all_tasks() if task is not current]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
        await self._loop.shutdown_asyncgens()

    def _stop_loop(self) -> None:
        with contextlib.suppress(InvariantViolation):
            self.run(self._drain())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self.step_timeout)
        if not self._thread.is_alive():
            self._loop.close()

    def teardown(self) -> None:
        """Close the client and the fakes, stop the loop; a fake's own error is re-raised."""
        try:
            self.run(self._close())
        finally:
            self._stop_loop()

    def _call(self, tool: str, arguments: Mapping[str, Any]) -> None:
        self.calls += 1
        self._call_marks.append(self.timeline.next_seq)
        self._fault_pending = False
        ok = self.run(self.call(self.client, tool, arguments))
        if self.revoked:
            if ok:
                raise InvariantViolation(
                    f"call {tool!r} succeeded after its grant was revoked\n{self.timeline.format()}"
                )
        elif not ok:
            raise InvariantViolation(
                f"call {tool!r} did not end with a result\n{self.timeline.format()}"
            )

    # -- rules ------------------------------------------------------------------------------

    @rule(text=st.sampled_from(["hello", "again"]))
    def call_echo(self, text: str) -> None:
        """An ordinary tool call."""
        self._call("echo", {"text": text})

    @precondition(lambda self: not self.revoked)
    @rule(count=st.integers(1, 3), cut_after=st.none() | st.integers(1, 2))
    def call_stream(self, count: int, cut_after: int | None) -> None:
        """A progress-streaming call, optionally cut after a few events (then resumed)."""
        if cut_after is not None and cut_after < count:
            self.mcp_server.faults.add(
                Fault(Match(tool="stream", sse_event=cut_after), CutStream())
            )
        self.calls += 1
        self._call_marks.append(self.timeline.next_seq)
        self._fault_pending = False
        ok = self.run(self._stream(count))
        if not ok:
            raise InvariantViolation(
                f"stream call did not end with a result\n{self.timeline.format()}"
            )

    async def _stream(self, count: int) -> bool:
        task = asyncio.ensure_future(
            self.call(self.client, "stream", {"count": count, "pace": 1.0})
        )
        # The stream moves only when time does; the step's own bound (run) covers a hang.
        await drive_clock(self.clock, advance=1.0, timeout=self.step_timeout, until=[task])
        return await task

    @precondition(lambda self: not self.revoked)
    @rule()
    def rotate(self) -> None:
        """The authorization server invalidates every access token now."""
        self.invalidations += 1
        self.auth_server.rotate()

    def _arm(self, action: Action) -> None:
        # One request fault at a time: two on one call would also fail its replay (or race each
        # other), and passing that second failure back is correct behaviour, not a bug.
        self.invalidations += 1
        self._fault_pending = True
        self.mcp_server.faults.add(Fault(Match(rpc_method="tools/call"), action))

    @precondition(lambda self: not self.revoked and not self._fault_pending)
    @rule()
    def expire_next_bearer(self) -> None:
        """The next call's bearer expires as it arrives."""
        self._arm(Expire())

    @precondition(lambda self: not self.revoked)
    @rule(seconds=st.sampled_from([60.0, 3600.0]))
    def advance_clock(self, seconds: float) -> None:
        """Time passes, possibly past the access token's lifetime."""
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
            raise InvariantViolation(f"refresh-token reuse\n{self.timeline.format()}")

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
                raise InvariantViolation(
                    f"request id(s) sent upstream more than twice in one call: {replayed}\n"
                    f"{self.timeline.format()}"
                )

    @invariant()
    def one_refresh_per_invalidation(self) -> None:
        """Single-flight: no more token requests than invalidations (plus the first fetch)."""
        if self.auth_server.token_requests > 1 + self.invalidations:
            raise InvariantViolation(
                f"{self.auth_server.token_requests} token requests for {self.invalidations} "
                f"invalidations\n{self.timeline.format()}"
            )
