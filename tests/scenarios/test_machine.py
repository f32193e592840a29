from __future__ import annotations

import asyncio
import itertools
import threading
import tomllib
from collections.abc import Mapping
from typing import Any

import httpx
import httpx2
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from freshtoken import InvariantViolation
from freshtoken.scenarios import (
    AuthorizationControl,
    Call,
    Initialize,
    McpClient,
    RotationMachine,
    Scenario,
    parse_scenario,
    run_scenario_sync,
)

QUICK = settings(
    max_examples=15,
    stateful_step_count=12,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class ProxyMachine(RotationMachine):
    """The default client: freshtoken's proxy with the built-in client behind it."""


TestProxyKeepsItsInvariants = ProxyMachine.TestCase
TestProxyKeepsItsInvariants.settings = QUICK


class BakedBearerMachine(RotationMachine):
    """A user's own client, plugged in through the hooks: it bakes its bearer at construction."""

    async def make_client(self) -> httpx.AsyncClient:
        token = self.auth_server.issue_tokens().access_token
        client = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"})
        response = await client.post(
            self.mcp_server.url,
            headers={"Accept": "application/json, text/event-stream"},
            json={
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": self.protocol_version,
                    "capabilities": {},
                    "clientInfo": {"name": "baked", "version": "1"},
                },
            },
        )
        client.headers["Mcp-Session-Id"] = response.headers["Mcp-Session-Id"]
        client.headers["MCP-Protocol-Version"] = self.protocol_version
        return client

    async def call(self, client: Any, tool: str, arguments: Mapping[str, Any]) -> bool:
        response = await client.post(
            self.mcp_server.url,
            headers={"Accept": "application/json, text/event-stream"},
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": tool, "arguments": dict(arguments)},
            },
        )
        return bool(response.status_code == 200 and "result" in response.text)

    async def close_client(self, client: Any) -> None:
        await client.aclose()


def test_a_subclass_drives_its_own_client_and_the_machine_catches_its_bug() -> None:
    with pytest.raises(InvariantViolation, match="did not end with a result") as excinfo:
        run_state_machine_as_test(
            # Derandomized: the search for the bug must not depend on this run's random seed.
            BakedBearerMachine,
            settings=settings(QUICK, max_examples=50, derandomize=True, report_multiple_bugs=False),
        )
    assert "auth.rejected" in str(excinfo.value)


def test_machine_tears_down_its_loop_thread() -> None:
    before = threading.active_count()
    machine = ProxyMachine()
    try:
        machine.call_echo("hi")
        machine.rotate()
        machine.call_echo("again")
        machine.at_most_one_replay_per_call()
        machine.one_refresh_per_invalidation()
    finally:
        machine.teardown()
    assert threading.active_count() == before
    assert machine.auth_server.token_requests == 1


def test_revocation_fails_calls_promptly_without_a_storm() -> None:
    machine = ProxyMachine()
    try:
        machine.call_echo("before")
        machine.revoke()
        machine.call_echo("revoked")
        machine.call_echo("still revoked")
        machine.one_refresh_per_invalidation()
    finally:
        machine.teardown()
    assert machine.auth_server.token_requests == 1


def test_a_hang_on_the_clock_is_reported_without_waiting_in_real_time() -> None:
    class Hanging(ProxyMachine):
        # Were the hang found by the real-time bound, the message would say so (and take 60 s).
        step_timeout = 60.0

        async def call(self, client: Any, tool: str, arguments: Mapping[str, Any]) -> bool:
            await self.clock.sleep(1_000_000)  # longer than any step may wait on the clock
            return True

    machine = Hanging()
    try:
        with pytest.raises(InvariantViolation, match=r"after 300 s on the manual clock") as excinfo:
            machine.call_echo("hi")
        assert "call.start" not in str(excinfo.value)  # the hung call is this machine's own
    finally:
        machine.teardown()


def test_a_step_waiting_on_the_clock_gets_time_moved() -> None:
    class Patient(ProxyMachine):
        async def call(self, client: Any, tool: str, arguments: Mapping[str, Any]) -> bool:
            before = self.clock.time()
            await self.clock.sleep(5)
            return self.clock.time() - before >= 5

    machine = Patient()
    try:
        machine.call_echo("hi")  # a False result would raise: the sleep ended on time
        machine.call_stream(3, None)  # three events paced one clock second apart
    finally:
        machine.teardown()


def test_a_hang_off_the_clock_is_bounded_in_real_time() -> None:
    class Stuck(ProxyMachine):
        step_timeout = 0.5

        async def call(self, client: Any, tool: str, arguments: Mapping[str, Any]) -> bool:
            await asyncio.Event().wait()  # nothing will ever set it
            return True

    machine = Stuck()
    try:
        with pytest.raises(InvariantViolation, match=r"did not finish within 0\.5 s"):
            machine.call_echo("hi")
    finally:
        machine.teardown()  # the stuck call is cancelled; close_client still runs


def test_the_client_lives_in_one_task() -> None:
    tasks: list[str] = []

    class Recording(ProxyMachine):
        async def make_client(self) -> Any:
            tasks.append(f"make {id(asyncio.current_task())}")
            return await super().make_client()

        async def call(self, client: Any, tool: str, arguments: Mapping[str, Any]) -> bool:
            tasks.append(f"call {id(asyncio.current_task())}")
            return await super().call(client, tool, arguments)

        async def close_client(self, client: Any) -> None:
            tasks.append(f"close {id(asyncio.current_task())}")

    machine = Recording()
    try:
        machine.call_echo("one")
        machine.call_stream(2, 1)
    finally:
        machine.teardown()
    assert [entry.split()[0] for entry in tasks] == ["make", "call", "call", "close"]
    assert len({entry.split()[1] for entry in tasks}) == 1


def test_a_failure_carries_its_steps_as_a_scenario_file() -> None:
    machine = BakedBearerMachine()
    try:
        machine.call_echo("hello")
        machine.rotate()
        with pytest.raises(InvariantViolation, match="did not end with a result") as excinfo:
            machine.call_echo("again")
    finally:
        machine.teardown()
    scenario = _scenario_from_notes(excinfo.value)
    assert scenario.name == "baked-bearer-machine-example"
    assert scenario.steps == (
        Initialize(),
        Call(arguments={"text": "hello"}),
        AuthorizationControl("rotate"),
        Call(arguments={"text": "again"}),
    )
    assert scenario.invariants.max_token_requests == 2
    # The file reproduces the bug on the scenario runner's own baked-bearer client, and the
    # proxy passes it.
    assert not run_scenario_sync(scenario, "baked-bearer").passed
    assert run_scenario_sync(scenario, "proxy").passed


def _scenario_from_notes(error: BaseException) -> Scenario:
    notes = [n for n in getattr(error, "__notes__", []) if n.startswith("freshtoken: ")]
    assert len(notes) == 1, notes
    header, _, text = notes[0].partition("\n")
    assert "--freshtoken-catalogue-dir" in header
    return parse_scenario(tomllib.loads(text))


class SdkBakedBearerMachine(RotationMachine):
    """The official MCP SDK client (anyio: its session and transport are cancel scopes and task
    groups) with the planted bug: its bearer is baked into its HTTP client."""

    async def make_client(self) -> Any:
        token = self.auth_server.issue_tokens().access_token
        http = await self.client_stack.enter_async_context(
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
        )
        read, write = await self.client_stack.enter_async_context(
            streamable_http_client(self.mcp_server.url, http_client=http)
        )
        session = await self.client_stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        return session

    async def call(self, client: Any, tool: str, arguments: Mapping[str, Any]) -> bool:
        try:
            result = await client.call_tool(tool, dict(arguments))
        except Exception:  # the SDK raises on a refused bearer
            return False
        return not result.is_error


def test_the_sdk_client_is_driven_and_its_bug_shrunk_to_three_steps() -> None:
    with pytest.raises(InvariantViolation, match="did not end with a result") as excinfo:
        run_state_machine_as_test(
            SdkBakedBearerMachine,
            settings=settings(QUICK, max_examples=60, derandomize=True, report_multiple_bugs=False),
        )
    error = excinfo.value
    invariants = ("no_refresh_token_reuse", "at_most_one_replay_per_call", "one_refresh_per")
    steps = [
        line.strip()
        for note in getattr(error, "__notes__", [])
        for line in note.splitlines()
        if line.strip().startswith("state.")
        and "teardown" not in line
        and not any(name in line for name in invariants)
    ]
    assert 1 <= len(steps) <= 3, steps
    assert "state.rotate()" in steps or any("expire" in s or "fail_next" in s for s in steps)
    scenario = _scenario_from_notes(error)
    assert len(scenario.steps) <= 4  # initialize, then the shrunk steps
    assert not run_scenario_sync(scenario, "baked-bearer").passed


class _Sends:
    """Client auth that sends each request as often as ``plan`` says (initialize first)."""

    def __init__(self, token: str, plan: list[int]) -> None:
        self.token, self.plan = token, iter(plan)
        self.times = 1

    async def authorization(self) -> str | None:
        return f"Bearer {self.token}"

    async def should_retry(self, exchange: object, attempt: int, sent: str | None) -> bool:
        if attempt == 1:
            self.times = next(self.plan)
        return attempt < self.times


def _machine_sending(plan: list[int], *, same_id: bool) -> RotationMachine:
    class Machine(RotationMachine):
        async def make_client(self) -> McpClient:
            token = self.auth_server.issue_tokens().access_token
            client = McpClient(
                self.mcp_server.url, timeline=self.timeline, auth=_Sends(token, plan)
            )
            await client.initialize()
            if same_id:
                # Like a client that numbers every call 1: ids repeat across calls.
                client._ids = itertools.repeat(1)  # type: ignore[assignment]
            return client

        async def close_client(self, client: Any) -> None:
            await client.aclose()

    return Machine()


def test_a_request_sent_three_times_in_one_call_is_caught_even_if_the_average_is_fine() -> None:
    # Two calls, four sends: no more than two per call on average, but the first went thrice.
    machine = _machine_sending([1, 3, 1], same_id=False)
    try:
        machine.call_echo("thrice")
        machine.call_echo("once")
        with pytest.raises(InvariantViolation, match=r"more than twice in one call: \{'2': 3\}"):
            machine.at_most_one_replay_per_call()
    finally:
        machine.teardown()


def test_ids_reused_across_calls_are_not_replays() -> None:
    machine = _machine_sending([1, 2, 2, 2], same_id=True)
    try:
        for text in ("one", "two", "three"):
            machine.call_echo(text)
        sent = [
            e.request_id
            for e in machine.timeline.select(actor="mcp", kind="request")
            if e.detail.get("rpc_method") == "tools/call"
        ]
        assert sent == ["1"] * 6  # each call sent twice, all under id 1
        machine.at_most_one_replay_per_call()
    finally:
        machine.teardown()
