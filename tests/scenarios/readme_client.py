"""A command-subject client written from the README's command protocol alone, on the official
MCP Python SDK. Through the proxy it sends no token; directly it bakes the seeded bearer in
(what the SDK does with a static header), so direct runs show the stale-bearer bug."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
from pathlib import Path
from typing import Any

import httpx2
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client

ENV = os.environ
CONTROL = ENV["FRESHTOKEN_CONTROL_URL"]
TIMEOUT = float(ENV["FRESHTOKEN_STEP_TIMEOUT"])


async def sampling(context: Any, params: Any) -> types.CreateMessageResult:
    text = types.TextContent(type="text", text="freshtoken")
    return types.CreateMessageResult(role="assistant", content=text, model="readme-client")


async def elicitation(context: Any, params: Any) -> types.ElicitResult:
    return types.ElicitResult(action="decline")


async def no_roots(context: Any) -> types.ListRootsResult:
    return types.ListRootsResult(roots=[])


class Client:
    def __init__(self, runner: httpx2.AsyncClient) -> None:
        self.runner = runner
        self.headers: dict[str, str] = {}  # per-call Origin/Host
        self.status: int | None = None  # the last tools/call response's HTTP status
        self.stack = contextlib.AsyncExitStack()
        self.session: ClientSession | None = None

    async def on_request(self, request: httpx2.Request) -> None:
        request.headers.update(self.headers)

    async def on_response(self, response: httpx2.Response) -> None:
        if response.request.method == "POST" and b'"tools/call"' in response.request.content:
            self.status = response.status_code

    async def connect(self) -> None:
        await self.stack.aclose()
        self.stack = contextlib.AsyncExitStack()
        headers = {}
        if ENV["FRESHTOKEN_VIA_PROXY"] != "1":
            headers["Authorization"] = f"Bearer {ENV['FRESHTOKEN_ACCESS_TOKEN']}"
        hooks = {"request": [self.on_request], "response": [self.on_response]}
        verify = ssl.create_default_context(cafile=ENV.get("FRESHTOKEN_CA_FILE"))
        http = await self.stack.enter_async_context(
            httpx2.AsyncClient(headers=headers, event_hooks=hooks, verify=verify)
        )
        read, write = await self.stack.enter_async_context(
            streamable_http_client(ENV["FRESHTOKEN_MCP_URL"], http_client=http)
        )
        self.session = await self.stack.enter_async_context(
            ClientSession(
                read,
                write,
                sampling_callback=sampling,
                elicitation_callback=elicitation,
                list_roots_callback=no_roots,
            )
        )
        await self.session.initialize()

    async def report(self, index: int, body: dict[str, Any]) -> None:
        (await self.runner.post(f"{CONTROL}/result/{index}", json=body)).raise_for_status()

    async def call(self, step: dict[str, Any], tool: str, arguments: dict[str, Any]) -> None:
        index, progress = step["index"], []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)
            await self.runner.post(f"{CONTROL}/event", json={"event": "sse.event", "step": index})

        self.headers = {k.title(): step[k] for k in ("origin", "host") if step.get(k)}
        try:
            for attempt in range(2):
                assert self.session is not None
                try:
                    result = await asyncio.wait_for(
                        self.session.call_tool(tool, arguments, progress_callback=on_progress),
                        TIMEOUT,
                    )
                    break
                except Exception:
                    # The server forgot our session (404): start a new one, send once more.
                    if attempt or self.status != 404:
                        raise
                    await self.connect()
            body = {"ok": not result.is_error, "status": 200, "progress": progress}
        except Exception as exc:
            body = {"ok": False, "status": self.status, "progress": progress, "error": repr(exc)}
        finally:
            self.headers = {}
        await self.report(index, body)


async def main() -> None:
    steps = json.loads(Path(ENV["FRESHTOKEN_STEPS"]).read_text())["steps"]  # noqa: ASYNC240
    background: dict[int, asyncio.Task[None]] = {}
    async with httpx2.AsyncClient(timeout=60) as runner:
        client = Client(runner)
        try:
            for step in steps:
                kind, index = step["step"], step["index"]
                if step["by"] == "runner":
                    (await runner.post(f"{CONTROL}/step/{index}")).raise_for_status()
                elif kind == "initialize":
                    await client.connect()
                elif kind == "call" and step["background"]:
                    background[index] = asyncio.create_task(
                        client.call(step, step["tool"], step["arguments"])
                    )
                elif kind == "call":
                    await client.call(step, step["tool"], step["arguments"])
                elif kind == "stream":
                    args = {"count": step["count"], "pace": step["pace"]}
                    background[index] = asyncio.create_task(client.call(step, "stream", args))
                elif kind == "burst":
                    await asyncio.gather(
                        *(
                            client.call(step, step["tool"], step["arguments"])
                            for _ in range(step["n"])
                        )
                    )
                elif kind == "disconnect":
                    for i, task in background.items():
                        if task.cancel():
                            await client.report(i, {"ok": False, "abandoned": True})
                # open_get_stream and resume: the SDK opens and resumes its GET stream itself.
            await asyncio.gather(*background.values(), return_exceptions=True)
        finally:
            await client.stack.aclose()


if __name__ == "__main__":
    asyncio.run(main())
