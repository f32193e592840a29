"""The ``python-sdk`` subject: the official MCP Python SDK's client, driven by the command protocol.

Run by freshtoken as a command (``python python_sdk.py``), one process per scenario. Directly, the
SDK manages its own tokens with its ``OAuthClientProvider``, whose storage holds the scenario's
seeded grant (access and refresh token, expiry, scope) and its registered client; through the proxy
(``FRESHTOKEN_VIA_PROXY=1``) it holds no token at all. The client is unattended, as an agent is:
when the SDK asks for an interactive login, the request is recorded as a ``login.requested`` client
event and refused (nobody is there to approve it).

This file maps each step onto the SDK's public API and nothing more: whatever the SDK does with a
401, an expiry or a lost session is the SDK's own behaviour, which is what the scenarios judge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx2
from mcp import ClientSession, types
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

ENV = os.environ
CONTROL = ENV["FRESHTOKEN_CONTROL_URL"]
TIMEOUT = float(ENV["FRESHTOKEN_STEP_TIMEOUT"])
VIA_PROXY = ENV.get("FRESHTOKEN_VIA_PROXY") == "1"
# The SDK never follows this: an unattended client has no browser to send back to it.
REDIRECT_URI = "http://127.0.0.1/callback"


class SeededStorage:
    """The SDK's token storage, holding the grant an earlier login left behind."""

    def __init__(self) -> None:
        expires_in = ENV.get("FRESHTOKEN_EXPIRES_IN")
        self.tokens: OAuthToken | None = OAuthToken(
            access_token=ENV["FRESHTOKEN_ACCESS_TOKEN"],
            refresh_token=ENV.get("FRESHTOKEN_REFRESH_TOKEN") or None,
            expires_in=None if expires_in is None else max(int(float(expires_in)), 0),
            scope=ENV.get("FRESHTOKEN_SCOPE") or None,
        )
        self.client = OAuthClientInformationFull(
            client_id=ENV["FRESHTOKEN_CLIENT_ID"],
            client_secret=ENV["FRESHTOKEN_CLIENT_SECRET"],
            token_endpoint_auth_method="client_secret_basic",
            redirect_uris=[REDIRECT_URI],  # type: ignore[list-item]
            grant_types=["authorization_code", "refresh_token"],
            scope=ENV.get("FRESHTOKEN_SCOPE") or None,
            issuer=ENV["FRESHTOKEN_ISSUER"],
        )

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


async def sampling(context: Any, params: Any) -> types.CreateMessageResult:
    text = types.TextContent(type="text", text="freshtoken")
    return types.CreateMessageResult(role="assistant", content=text, model="python-sdk-subject")


async def elicitation(context: Any, params: Any) -> types.ElicitResult:
    return types.ElicitResult(action="decline")


async def no_roots(context: Any) -> types.ListRootsResult:
    return types.ListRootsResult(roots=[])


class Client:
    """One MCP session over the SDK's transport, and the reports the runner gets."""

    def __init__(self, runner: httpx2.AsyncClient) -> None:
        self.runner = runner
        self.headers: dict[str, str] = {}  # a call's Origin/Host
        self.status: int | None = None  # the last tools/call response's HTTP status
        self.session: ClientSession | None = None
        self.owner: asyncio.Task[None] | None = None
        self.closing = asyncio.Event()
        self.auth: OAuthClientProvider | None = None
        if not VIA_PROXY:
            metadata = OAuthClientMetadata(
                redirect_uris=[REDIRECT_URI],  # type: ignore[list-item]
                grant_types=["authorization_code", "refresh_token"],
                scope=ENV.get("FRESHTOKEN_SCOPE") or None,
                client_name="freshtoken python-sdk subject",
            )
            self.auth = OAuthClientProvider(
                ENV["FRESHTOKEN_MCP_URL"],
                metadata,
                SeededStorage(),
                redirect_handler=self.login_requested,
                callback_handler=self.no_callback,
            )

    async def event(self, kind: str, step: int | None = None, **detail: Any) -> None:
        body: dict[str, Any] = {"event": kind, "detail": detail}
        if step is not None:
            body["step"] = step
        (await self.runner.post(f"{CONTROL}/event", json=body)).raise_for_status()

    async def login_requested(self, authorization_url: str) -> None:
        await self.event("login.requested", via="redirect_handler")
        raise RuntimeError("the SDK asked for an interactive login; this client is unattended")

    async def no_callback(self) -> AuthorizationCodeResult:
        raise RuntimeError("no authorization code: this client is unattended")

    async def on_request(self, request: httpx2.Request) -> None:
        request.headers.update(self.headers)

    async def on_response(self, response: httpx2.Response) -> None:
        if response.request.method == "POST" and b'"tools/call"' in response.request.content:
            self.status = response.status_code

    async def connect(self) -> None:
        """Open the session in a task of its own, as an application would: when the SDK's
        transport fails, its task group ends that task, not the steps."""
        ready: asyncio.Future[ClientSession] = asyncio.get_running_loop().create_future()
        self.owner = asyncio.create_task(self.own(ready))
        self.session = await asyncio.wait_for(asyncio.shield(ready), TIMEOUT)

    async def own(self, ready: asyncio.Future[ClientSession]) -> None:
        hooks: dict[str, list[Callable[..., Any]]] = {
            "request": [self.on_request],
            "response": [self.on_response],
        }
        verify = ssl.create_default_context(cafile=ENV.get("FRESHTOKEN_CA_FILE"))
        try:
            async with (
                httpx2.AsyncClient(
                    auth=self.auth, event_hooks=hooks, verify=verify, timeout=30
                ) as http,
                streamable_http_client(ENV["FRESHTOKEN_MCP_URL"], http_client=http) as (
                    read,
                    write,
                ),
                ClientSession(
                    read,
                    write,
                    sampling_callback=sampling,
                    elicitation_callback=elicitation,
                    list_roots_callback=no_roots,
                ) as session,
            ):
                await session.initialize()
                ready.set_result(session)
                await self.closing.wait()
        except BaseException as exc:
            print(f"the session ended: {exc!r}", flush=True)
            if not ready.done():
                ready.set_exception(RuntimeError(f"initialize failed: {exc!r}"))
            if not isinstance(exc, Exception):
                raise

    async def close(self) -> None:
        self.closing.set()
        if self.owner is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self.owner, TIMEOUT)

    async def report(self, index: int, body: dict[str, Any]) -> None:
        (await self.runner.post(f"{CONTROL}/result/{index}", json=body)).raise_for_status()

    async def call(self, step: dict[str, Any], tool: str, arguments: dict[str, Any]) -> None:
        index, received = step["index"], []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            received.append(progress)
            await self.event("sse.event", index)

        self.headers = {k.title(): step[k] for k in ("origin", "host") if step.get(k)}
        try:
            if self.session is None:
                raise RuntimeError("no session: initialize failed")
            result = await asyncio.wait_for(
                self.session.call_tool(tool, arguments, progress_callback=on_progress), TIMEOUT
            )
            body = {"ok": not result.is_error, "status": 200, "progress": received}
        except Exception as exc:
            body = {"ok": False, "status": self.status, "progress": received, "error": repr(exc)}
        finally:
            self.headers = {}
        await self.report(index, body)


async def play(client: Client, steps: list[dict[str, Any]]) -> None:
    background: dict[int, asyncio.Task[None]] = {}
    for step in steps:
        kind, index = step["step"], step["index"]
        if step["by"] == "runner":
            response = await client.runner.post(f"{CONTROL}/step/{index}", timeout=None)
            response.raise_for_status()
        elif kind == "initialize":
            try:
                await client.connect()
            except Exception as exc:  # reported with the calls that then fail
                print(f"initialize failed: {exc!r}", flush=True)
        elif kind == "call" and step["background"]:
            call = client.call(step, step["tool"], step["arguments"])
            background[index] = asyncio.create_task(call)
        elif kind == "call":
            await client.call(step, step["tool"], step["arguments"])
        elif kind == "stream":
            arguments = {"count": step["count"], "pace": step["pace"]}
            background[index] = asyncio.create_task(client.call(step, "stream", arguments))
        elif kind == "burst":
            calls = [client.call(step, step["tool"], step["arguments"]) for _ in range(step["n"])]
            await asyncio.gather(*calls)
        elif kind == "disconnect":
            for i, task in background.items():
                if task.cancel():
                    await client.report(i, {"ok": False, "abandoned": True})
        # open_get_stream and resume: the SDK opens its GET stream after initializing, and
        # resumes a cut stream, by itself.
    await asyncio.gather(*background.values(), return_exceptions=True)


async def main() -> None:
    document = json.loads(Path(ENV["FRESHTOKEN_STEPS"]).read_text())  # noqa: ASYNC240
    async with httpx2.AsyncClient(timeout=60) as runner:
        client = Client(runner)
        await client.event("sdk", package="mcp", version=version("mcp"), via_proxy=VIA_PROXY)
        try:
            await play(client, document["steps"])
        finally:
            await client.close()


if __name__ == "__main__":
    asyncio.run(main())
