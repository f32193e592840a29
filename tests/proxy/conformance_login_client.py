"""The client command the MCP conformance suite's auth scenarios run: ``freshtoken login
--headless`` gets the credentials, ``freshtoken proxy``'s config (``type = "login"``) serves
them, and a client holding no token calls the scenario's tool through the proxy.

Invoked by the suite as ``python conformance_login_client.py SERVER_URL`` with the scenario in
``MCP_CONFORMANCE_SCENARIO`` and its context (pre-registered client credentials) as JSON in
``MCP_CONFORMANCE_CONTEXT`` (or a client id and a private key for ``private_key_jwt``). A 403 ``insufficient_scope`` from the server is a step-up: log in
again with the union of the scopes, have the proxy adopt the new store, retry — at most twice,
so a server whose step-up never succeeds sees at most three authorizations.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from freshtoken.cli import main as freshtoken
from freshtoken.proxy import Proxy, load_config
from freshtoken.proxy._discovery import parse_challenges

CIMD_URL = "https://conformance-test.local/client-metadata.json"
MAX_STEP_UPS = 2


def login_argv(url: str, store: Path, scope: str | None = None) -> list[str]:
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    argv = ["login", url, "--store", str(store), "--headless", "--timeout", "20"]
    if "client_id" in context:
        argv += ["--client-id", context["client_id"]]
    if "client_secret" in context:
        os.environ["CONFORMANCE_CLIENT_SECRET"] = context["client_secret"]
        argv += ["--client-secret-env", "CONFORMANCE_CLIENT_SECRET"]
    if "private_key_pem" in context:
        # private_key_jwt: the key goes in a file beside the store (which records its path).
        key = store.parent / "client-key.pem"
        key.touch(mode=0o600)
        key.write_text(context["private_key_pem"])
        argv += ["--private-key-file", str(key)]
        if "signing_algorithm" in context:
            argv += ["--signing-alg", context["signing_algorithm"]]
    if scenario.startswith("auth/client-credentials"):
        argv += ["--grant", "client_credentials"]
    else:
        # Used only where the authorization server says it supports Client ID Metadata Documents.
        argv += ["--client-metadata-url", CIMD_URL]
    if scope:
        argv += ["--scope", scope]
    return argv


class RawClient:
    """Just enough Streamable HTTP to initialize and call a tool; it holds no token."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url
        self.session: str | None = None
        self.ids = iter(range(1, 1000))

    async def send(self, method: str, params: dict[str, Any], *, notify: bool = False) -> Any:
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if not notify:
            body["id"] = next(self.ids)
        headers = {
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-11-25",
        }
        if self.session:
            headers["Mcp-Session-Id"] = self.session
        response = await self.http.post(self.url, json=body, headers=headers)
        if response.status_code == 403:
            raise StepUp(response.headers.get_list("WWW-Authenticate"))
        response.raise_for_status()
        self.session = response.headers.get("Mcp-Session-Id", self.session)
        if notify:
            return None
        if response.headers.get("Content-Type", "").startswith("text/event-stream"):
            for line in response.text.splitlines():
                if line.startswith("data:") and line[5:].strip():
                    message = json.loads(line[5:])
                    if message.get("id") == body["id"]:
                        return message
            raise RuntimeError(f"no answer to {method} in the event stream")
        return response.json()


class StepUp(Exception):
    def __init__(self, challenges: list[str]) -> None:
        super().__init__("403 insufficient_scope")
        self.scope = parse_challenges(challenges).get("bearer", {}).get("scope")


async def call_tool(url: str, store: Path, config: Path, granted: str) -> None:
    proxy_config = load_config(config)
    async with Proxy() as proxy, httpx.AsyncClient(timeout=10) as http:
        local = proxy_config.register_all(proxy)["conformance"]
        client = RawClient(http, local)
        step_ups = 0
        while True:
            try:
                await client.send(
                    "initialize",
                    {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "freshtoken-conformance", "version": "1"},
                    },
                )
                await client.send("notifications/initialized", {}, notify=True)
                tools = (await client.send("tools/list", {}))["result"]["tools"]
                answer = await client.send(
                    "tools/call", {"name": tools[0]["name"], "arguments": {}}
                )
                print(json.dumps(answer))
                return
            except StepUp as step_up:
                step_ups += 1
                if step_up.scope is None or step_ups > MAX_STEP_UPS:
                    raise
                scope = " ".join(dict.fromkeys([*granted.split(), *step_up.scope.split()]))
                code = await asyncio.to_thread(freshtoken, login_argv(url, store, scope))
                if code != 0:
                    raise SystemExit(code) from None
                granted = scope
                await proxy.refresh("conformance")


def run(url: str) -> int:
    with tempfile.TemporaryDirectory(prefix="freshtoken-conformance-") as directory:
        store = Path(directory) / "store.json"
        code = freshtoken(login_argv(url, store))
        if code != 0:
            return code
        config = Path(directory) / "proxy.toml"
        config.write_text(
            f'[targets.conformance]\nurl = "{url}"\n'
            f'[targets.conformance.token]\ntype = "login"\nstore = "{store}"\n'
        )
        granted = json.loads(store.read_text())["login"].get("scope", "")
        asyncio.run(call_tool(url, store, config, granted))
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[-1]))
