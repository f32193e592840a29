"""An external scenario client built on the official MCP Python SDK (not freshtoken's client).

Run by the ``command`` subject: it reads the steps from ``$FRESHTOKEN_STEPS``, performs the
client steps with ``mcp.ClientSession`` (bearer baked into the HTTP client, as the SDK does),
asks the runner to perform runner steps, and reports every call's outcome.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def main() -> None:
    steps = json.loads(Path(os.environ["FRESHTOKEN_STEPS"]).read_text())  # noqa: ASYNC240
    control = os.environ["FRESHTOKEN_CONTROL_URL"]
    headers = {}
    if os.environ.get("FRESHTOKEN_VIA_PROXY") != "1":
        headers["Authorization"] = f"Bearer {os.environ['FRESHTOKEN_ACCESS_TOKEN']}"
    async with (
        httpx2.AsyncClient() as runner,
        httpx2.AsyncClient(headers=headers) as http,
        streamable_http_client(os.environ["FRESHTOKEN_MCP_URL"], http_client=http) as (
            read,
            write,
        ),
        ClientSession(read, write) as session,
    ):
        initialized = False
        for step in steps:
            index = step["index"]
            if step["by"] == "runner":
                (await runner.post(f"{control}/step/{index}")).raise_for_status()
            elif step["step"] == "initialize" and not initialized:
                await session.initialize()
                initialized = True
            elif step["step"] == "call":
                report: dict[str, Any]
                try:
                    result = await asyncio.wait_for(
                        session.call_tool(step["tool"], step["arguments"]), 5
                    )
                    report = {"ok": not result.is_error, "status": 200}
                except Exception as exc:
                    report = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                await runner.post(f"{control}/result/{index}", json=report)


if __name__ == "__main__":
    asyncio.run(main())
