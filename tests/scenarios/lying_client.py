"""A command-subject client that never contacts the MCP server and claims every call went as the
scenario expected: it asks for every runner step, reports each call (n for a burst, full progress
for a stream, the expected error and status where one is expected, abandoned ones as abandoned),
and posts the client events a scenario waits for. Verdicts from what the servers saw must fail it
everywhere."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

CONTROL = os.environ["FRESHTOKEN_CONTROL_URL"]


def claim(step: dict[str, Any]) -> dict[str, Any]:
    if step.get("expect") == "error":
        return {"ok": False, "status": step.get("expect_status"), "error": "as expected"}
    body: dict[str, Any] = {"ok": True, "status": 200}
    if step["step"] == "stream":
        body["progress"] = list(range(1, step["count"] + 1))
    return body


def main() -> None:
    steps = json.loads(Path(os.environ["FRESHTOKEN_STEPS"]).read_text())["steps"]
    background: list[dict[str, Any]] = []
    with httpx.Client(timeout=30) as runner:

        def report(step: dict[str, Any], body: dict[str, Any]) -> None:
            runner.post(f"{CONTROL}/result/{step['index']}", json=body)

        for step in steps:
            kind = step["step"]
            if step["by"] == "runner":
                if kind == "join":
                    for late in background:
                        report(late, claim(late))
                    background = []
                runner.post(f"{CONTROL}/step/{step['index']}")
            elif kind == "disconnect":
                for late in background:
                    report(late, {"ok": False, "abandoned": True})
                background = []
            elif kind in ("call", "stream", "burst"):
                runner.post(f"{CONTROL}/event", json={"event": "sse.event", "step": step["index"]})
                if kind == "stream" or step.get("background"):
                    background.append(step)
                    continue
                for _ in range(step.get("n", 1)):
                    report(step, claim(step))
        for late in background:
            report(late, claim(late))


if __name__ == "__main__":
    main()
