"""Benchmark processes: each role runs in its own interpreter and takes JSON-line commands.

A child announces ``{"ready": {...}}`` on stdout, then answers one line per command read from
stdin (``{"ok": result}`` or ``{"error": "..."}``) until ``quit`` or end of input; the parent
drives it through :class:`Worker`. Separate processes keep the load generator, the fakes and
the proxy from sharing one interpreter (and one core).
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

Handler = Callable[..., Awaitable[Any]]

HERE = Path(__file__).resolve().parent
_TICKS = os.sysconf("SC_CLK_TCK")


async def command_loop(ready: Mapping[str, Any], handlers: Mapping[str, Handler]) -> None:
    """Announce ``ready``, then serve commands from stdin until ``quit`` or end of input."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    _emit({"ready": dict(ready)})
    while line := await reader.readline():
        request = json.loads(line)
        command = request["cmd"]
        if command == "quit":
            _emit({"ok": None})
            return
        handler = handlers.get(command)
        if handler is None:
            _emit({"error": f"unknown command {command!r}"})
            continue
        try:
            result = await handler(**request.get("args", {}))
        except Exception as exc:
            _emit({"error": f"{type(exc).__name__}: {exc}"})
        else:
            _emit({"ok": result})


def _emit(message: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


class WorkerError(RuntimeError):
    """A benchmark process failed, answered with an error, or did not answer in time."""


class Worker:
    """The parent's handle on one benchmark process (``python benchmarks/<script> ARGS``)."""

    def __init__(
        self,
        name: str,
        script: str,
        *args: str,
        secret_input: str | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        self.name = name
        # Lives as long as the child does; close() closes it.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self._proc = subprocess.Popen(
            [sys.executable, str(HERE / script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        try:
            if secret_input is not None:
                # Secrets travel over the pipe, never on a command line others can read.
                assert self._proc.stdin is not None
                self._proc.stdin.write(secret_input + "\n")
                self._proc.stdin.flush()
            self.info: dict[str, Any] = self._read(ready_timeout)["ready"]
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self._proc.pid

    def call(self, command: str, *, wait: float = 120.0, **args: Any) -> Any:
        """Run ``command`` in the child and return its result (waiting at most ``wait`` s)."""
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps({"cmd": command, "args": args}) + "\n")
            stdin.flush()
        except BrokenPipeError:
            raise WorkerError(f"{self.name} exited:\n{self.stderr_tail()}") from None
        answer = self._read(wait)
        if "error" in answer:
            raise WorkerError(f"{self.name} {command}: {answer['error']}")
        return answer["ok"]

    def _read(self, timeout: float) -> dict[str, Any]:
        stdout = self._proc.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout)
        if not ready:
            raise WorkerError(f"{self.name} silent for {timeout:g} s:\n{self.stderr_tail()}")
        line = stdout.readline()
        if not line:
            self._proc.wait(timeout=5)
            raise WorkerError(f"{self.name} exited:\n{self.stderr_tail()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stderr_tail(self, limit: int = 4000) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-limit:]

    def pin(self, cpus: set[int]) -> None:
        """Restrict the process to ``cpus``."""
        os.sched_setaffinity(self._proc.pid, cpus)

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS

    def memory_kib(self) -> dict[str, int]:
        """``VmRSS`` and ``VmHWM`` (peak RSS) in KiB, from ``/proc/<pid>/status``."""
        found: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
        return found

    def close(self, timeout: float = 10.0) -> None:
        """Ask the child to quit; kill it if it does not exit within ``timeout``."""
        proc = self._proc
        if proc.poll() is None and proc.stdin is not None:
            try:
                proc.stdin.write('{"cmd": "quit"}\n')
                proc.stdin.close()
            except BrokenPipeError:
                pass
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
