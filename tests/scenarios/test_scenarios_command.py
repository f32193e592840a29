"""The ``command`` subject driving a client that is not freshtoken's: the official MCP SDK."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from freshtoken.scenarios import CommandSubject, load_catalogue, run_scenario

SDK_CLIENT = [sys.executable, str(Path(__file__).with_name("sdk_scenario_client.py"))]
CATALOGUE = {s.name: s for s in load_catalogue()}


@pytest.mark.parametrize("name", ["seed-stale-bearer-after-rotation", "auth-failure-200-jsonrpc"])
async def test_sdk_client_with_baked_bearer_fails_and_passes_behind_the_proxy(name: str) -> None:
    scenario = CATALOGUE[name]
    direct = await run_scenario(scenario, CommandSubject(SDK_CLIENT))
    assert not direct.passed
    assert "every_call_answered" in {c.name for c in direct.failures}
    assert direct.timeline.count(actor="client", kind="command.exit") == 1
    assert direct.timeline.count(actor="proxy") == 0

    proxied = await run_scenario(scenario, CommandSubject(SDK_CLIENT, via_proxy=True))
    assert proxied.passed, proxied.format_failures()
    assert proxied.timeline.count(actor="proxy", kind="refresh.done") == 1


async def test_command_that_never_reports_fails_without_hanging(tmp_path: Path) -> None:
    script = tmp_path / "lazy.py"
    script.write_text("import sys; sys.exit(3)\n")
    subject = CommandSubject([sys.executable, str(script)])
    result = await run_scenario(CATALOGUE["seed-stale-bearer-after-rotation"], subject)
    assert not result.passed
    assert result.timeline.select(actor="client", kind="command.exit")[0].status == 3
