"""The MCP conformance suite's client auth scenarios, with ``freshtoken login --headless`` and
the proxy as the client (``conformance_login_client.py``).

Every ``auth/*`` scenario of the pinned suite runs (three suites, each running its scenarios in
parallel). Those in
:data:`PASSING` must pass every check. The others must fail for the documented reason, shown by
freshtoken's own one-line error, so a different failure is caught as well:

- ``auth/metadata-var2`` and ``-var3``: the suite's authorization server lists itself as
  ``<origin>/tenant1`` but its metadata names the issuer ``<origin>``. RFC 8414 §3.3 forbids
  using such metadata (the mix-up defence; later suite versions fixed the server and added a
  scenario that requires the refusal), so freshtoken refuses it.

``auth/client-credentials-jwt`` checks ``private_key_jwt`` (RFC 7523) with the suite's own JOSE
library: an independent verifier of the assertions freshtoken signs.

Without ``npx`` the test skips locally and fails under CI (``CI`` set).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

SUITE = "@modelcontextprotocol/conformance@0.1.13"
CLIENT = Path(__file__).with_name("conformance_login_client.py")
PASSING = [
    "auth/metadata-default",
    "auth/metadata-var1",
    "auth/basic-cimd",
    "auth/scope-from-www-authenticate",
    "auth/scope-from-scopes-supported",
    "auth/scope-omitted-when-undefined",
    "auth/scope-step-up",
    "auth/scope-retry-limit",
    "auth/token-endpoint-auth-basic",
    "auth/token-endpoint-auth-post",
    "auth/token-endpoint-auth-none",
    "auth/resource-mismatch",
    "auth/pre-registration",
    "auth/2025-03-26-oauth-metadata-backcompat",
    "auth/2025-03-26-oauth-endpoint-fallback",
    "auth/client-credentials-basic",
    "auth/client-credentials-jwt",
]
ISSUER_MISMATCH = (
    r"freshtoken login: the authorization-server metadata at \S+ names issuer "
    r"http://localhost:\d+, not http://localhost:\d+/tenant1 \(RFC 8414 §3\.3\): refused"
)
REFUSED = {
    "auth/metadata-var2": ISSUER_MISMATCH,
    "auth/metadata-var3": ISSUER_MISMATCH,
}


def _npx() -> str:
    npx = shutil.which("npx")
    if npx is None:
        if os.environ.get("CI"):
            pytest.fail("npx is required in CI to run the MCP conformance suite")
        pytest.skip("npx is not installed")
    return npx


async def _suite(npx: str, *argv: str, timeout: float = 120) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        npx,
        "-y",
        SUITE,
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1", "npm_config_yes": "true"},
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, re.sub(r"\x1b\[[0-9;]*m", "", output.decode(errors="replace"))


def _verdict(scenario: str, checks: list[dict[str, Any]], stderr: str) -> str | None:
    """None if the scenario ended as expected, else why not."""
    statuses = [check.get("status") for check in checks]
    failed = [c.get("description") for c in checks if c.get("status") in ("FAILURE", "WARNING")]
    if scenario in PASSING:
        if "SUCCESS" in statuses and not failed:
            return None
        return f"expected to pass; failed checks: {failed}"
    if not failed:
        return "expected to fail, but passed: update PASSING and the README"
    if re.search(REFUSED[scenario], stderr) is None:
        return f"failed, but not for the documented reason ({REFUSED[scenario]!r})"
    return None


def _results(out: Path) -> dict[str, tuple[list[dict[str, Any]], str]]:
    """Scenario name → (its checks, the client's stderr), from the suites' result folders."""
    results = {}
    for checks in out.glob("*/auth/*/checks.json"):
        name = re.sub(r"-\d{4}-\d\d-\d\dT[\d-]+Z$", "", checks.parent.name)
        stderr = checks.with_name("stderr.txt")
        results[f"auth/{name}"] = (
            json.loads(checks.read_text()),
            stderr.read_text() if stderr.exists() else "",
        )
    return results


@pytest.mark.timeout(300)
async def test_conformance_client_auth_scenarios(tmp_path: Path) -> None:
    npx = _npx()
    code, listing = await _suite(npx, "list")
    assert code == 0, listing
    scenarios = re.findall(r"^\s+- (auth/\S+)$", listing, re.MULTILINE)
    assert sorted(scenarios) == sorted([*PASSING, *REFUSED]), listing
    command = f"{sys.executable} {CLIENT}"
    assert " " not in command.replace(" ", "", 1)  # the suite splits the command on spaces
    # Each suite runs its scenarios in parallel in one process: "auth" has the discovery,
    # scope, client-authentication and registration scenarios, "backcompat" the 2025-03-26
    # ones, "extensions" the client-credentials ones.
    suites = ("auth", "backcompat", "extensions")
    outputs = await asyncio.gather(
        *(
            _suite(
                npx, "client", "--command", command, "--suite", suite, "-o", str(tmp_path / suite)
            )
            for suite in suites
        )
    )
    results = _results(tmp_path)
    assert sorted(results) == sorted(scenarios), "\n".join(text for _, text in outputs)
    problems = [
        f"{scenario}: {why}\n{stderr[-2000:]}"
        for scenario, (checks, stderr) in sorted(results.items())
        if (why := _verdict(scenario, checks, stderr)) is not None
    ]
    assert not problems, "\n\n".join(problems)
