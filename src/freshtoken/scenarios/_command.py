"""The ``command`` subject: an external MCP client (any language) driven by the command protocol.

The protocol (version 2) is documented in the README and, machine-readably, in
``command-protocol.schema.json`` beside this module (:func:`protocol_schema`). Each run starts
the command in its own process group, serves the control endpoints on loopback, captures what
the command prints, and kills the whole group when the command exits, times out, or the run is
cancelled, so no process outlives its scenario.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import glob
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

from aiohttp import web

from freshtoken._clock import ManualClock
from freshtoken._errors import ConfigError
from freshtoken._serve import LoopbackSite
from freshtoken._setup import PROTOCOL_VERSIONS
from freshtoken.scenarios._applicability import SubjectProfile
from freshtoken.scenarios._model import Step, step_to_json
from freshtoken.scenarios._play import STEP_TIMEOUT, is_runner_step
from freshtoken.scenarios._session import (
    CommandRun,
    Environment,
    Play,
    ProtocolViolation,
    SubjectSession,
)

__all__ = [
    "COMMAND_REVISIONS",
    "PROTOCOL",
    "CommandSubject",
    "find_libfaketime",
    "protocol_schema",
    "steps_document",
]

PROTOCOL: Final = 2
"""The command protocol's version (``FRESHTOKEN_PROTOCOL``)."""
COMMAND_REVISIONS: Final[tuple[str, ...]] = ("2025-06-18", "2025-11-25")
"""The MCP revisions a command is taken to speak unless it says otherwise: the published ones
the official SDK clients speak (2026-07-28 is opt-in)."""
MAX_OUTPUT: Final = 256 * 1024
"""The newest bytes of a command's output kept per run."""
STOP_GRACE: Final = 0.5
"""Real seconds a command gets after SIGTERM before its process group is killed."""
ClockMode = Literal["auto", "faketime", "system"]

_FAKETIME_PATTERNS: Final = (
    "/usr/lib/*/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/lib64/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)


def find_libfaketime() -> str | None:
    """The libfaketime library to preload (``$FRESHTOKEN_LIBFAKETIME`` first), or None."""
    given = os.environ.get("FRESHTOKEN_LIBFAKETIME")
    if given:
        return given if Path(given).is_file() else None
    if sys.platform != "linux":
        return None
    for pattern in _FAKETIME_PATTERNS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


@functools.cache
def protocol_schema() -> dict[str, Any]:
    """The command protocol's JSON Schema (draft 2020-12), shipped with the package."""
    text = resources.files("freshtoken.scenarios").joinpath("command-protocol.schema.json")
    schema: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return schema


@functools.cache
def _validator(definition: str) -> Any:
    # Imported here: only command runs need it, and the harness imports fast without it.
    from jsonschema import Draft202012Validator

    return Draft202012Validator(
        {"$ref": f"#/$defs/{definition}", "$defs": protocol_schema()["$defs"]}
    )


def _invalid(definition: str, body: Any) -> str | None:
    """Why ``body`` is not a valid ``definition`` of the protocol schema (None: it is)."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator(definition).iter_errors(body))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message


def steps_document(
    scenario_name: str, protocol_version: str, steps: Sequence[Step]
) -> dict[str, Any]:
    """The steps file a command reads (``FRESHTOKEN_STEPS``): each step in its scenario-file
    form, with its index and ``"by": "client"`` or ``"runner"``."""
    return {
        "protocol": PROTOCOL,
        "scenario": scenario_name,
        "protocol_version": protocol_version,
        "steps": [
            {
                "index": index,
                "by": "runner" if is_runner_step(step) else "client",
                **step_to_json(step),
            }
            for index, step in enumerate(steps)
        ],
    }


@dataclass
class CommandSubject:
    """An external MCP client (any language) run as a command, driven by the command protocol.

    ``via_proxy`` gives it freshtoken's proxy's URL (and no credentials): it is then judged as a
    token-injecting proxy with its client; without, as a client managing its own tokens.
    ``revisions`` are the MCP revisions it speaks. ``clock``: on the ``"system"`` clock (the
    default) it gets the token's expiry but cannot see the scenario's clock move, so scenarios
    that need that are not applicable; ``"faketime"`` runs it under libfaketime, its wall clock
    following the scenario's (``"auto"``: when libfaketime is installed). ``timeout`` bounds one
    run in real seconds (``startup_allowance`` of them for starting up); ``echo`` receives its
    output as it comes (the CLI's ``-v``).
    """

    command: str | Sequence[str]
    via_proxy: bool = False
    revisions: Sequence[str] = COMMAND_REVISIONS
    # Not faketime by default: a preloaded library cannot reach every runtime (a statically
    # linked Go binary reads the kernel's clock directly) and libfaketime 0.9.10 fails
    # clock_nanosleep on a real monotonic clock (Python's time.sleep), so only a command that
    # says it works under it is judged on the clock.
    clock: ClockMode = "system"
    timeout: float = 30.0
    startup_allowance: float = 10.0
    """Real seconds the command may take to start (to its first control request) that do not
    count against a scenario's ``max_duration``: an interpreter importing an SDK is not a hang."""
    name: str = "command"
    description: str = "an external MCP client run as a command"
    echo: Callable[[str], None] | None = None
    runs: list[CommandRun] = field(default_factory=list)

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.command) if isinstance(self.command, str) else list(self.command)

    @property
    def faketime(self) -> str | None:
        """The libfaketime library the command runs under (None: the system clock)."""
        return None if self.clock == "system" else find_libfaketime()

    @property
    def profile(self) -> SubjectProfile:
        if self.via_proxy:
            # freshtoken's proxy holds the tokens, on the scenario's clock.
            return SubjectProfile.of(["proxy"], self.revisions)
        sees = self.faketime is not None
        note = (
            ""
            if sees
            else (
                "it runs on the system clock; --command-clock faketime moves it"
                if self.clock == "system"
                else "libfaketime is not installed"
            )
        )
        return SubjectProfile.of(["client"], self.revisions, sees_clock=sees, clock_note=note)

    def check(self) -> None:
        """Raise :class:`ConfigError` if the command cannot be started at all."""
        argv = self.argv
        if not argv:
            raise ConfigError("--command: empty command line")
        unknown = [r for r in self.revisions if r not in PROTOCOL_VERSIONS]
        if unknown or not self.revisions:
            raise ConfigError(
                f"--command-revision: {unknown[0] if unknown else '(none)'!r} is not one of "
                f"{', '.join(PROTOCOL_VERSIONS)}"
            )
        program = argv[0]
        if os.sep in program or (os.altsep and os.altsep in program):
            if not (Path(program).is_file() and os.access(program, os.X_OK)):
                raise ConfigError(f"--command: cannot run {program!r}: not an executable file")
        elif shutil.which(program) is None:
            raise ConfigError(f"--command: cannot run {program!r}: not found on PATH")
        if self.clock == "faketime" and find_libfaketime() is None:
            raise ConfigError(
                "--command-clock faketime: libfaketime is not installed "
                "(Debian: apt-get install libfaketime; or set FRESHTOKEN_LIBFAKETIME)"
            )

    @asynccontextmanager
    async def session(self, env: Environment) -> AsyncIterator[SubjectSession]:
        url = env.mcp_url
        if self.via_proxy:
            await env.harness.start_proxy()
            url = env.harness.proxy_url
        yield _CommandSession(self, env, url)


class _ClockFile:
    """libfaketime's timestamp file: the command's wall clock is the real one plus how far the
    scenario's clock has moved. Rewritten atomically, read by libfaketime on every time call."""

    def __init__(self, path: Path, clock: ManualClock) -> None:
        self.path = path
        self.clock = clock
        self.start = clock.time()
        self.sync()

    def sync(self) -> None:
        spare = self.path.with_suffix(".next")
        spare.write_text(f"+{self.clock.time() - self.start:.6f}\n")
        os.replace(spare, self.path)


class _Output:
    """The newest :data:`MAX_OUTPUT` bytes a command printed (a flood cannot grow memory)."""

    def __init__(self, echo: Callable[[str], None] | None) -> None:
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.dropped = 0
        self.echo = echo

    async def pump(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self.chunks.append(chunk)
            self.size += len(chunk)
            while self.size > MAX_OUTPUT and len(self.chunks) > 1:
                old = self.chunks.popleft()
                self.size -= len(old)
                self.dropped += len(old)
            if self.echo is not None:
                self.echo(chunk.decode(errors="replace"))

    def text(self) -> str:
        return b"".join(self.chunks)[-MAX_OUTPUT:].decode(errors="replace")


class _CommandSession:
    def __init__(self, subject: CommandSubject, env: Environment, url: str) -> None:
        self.subject = subject
        self.env = env
        self.url = url
        self.violations: list[str] = []
        self.clock_file: _ClockFile | None = None
        self.spawned: float | None = None
        self.playing: Play | None = None

    def _contact(self) -> None:
        """The command's first control request: it has started up."""
        if self.spawned is not None and self.playing is not None:
            elapsed = asyncio.get_running_loop().time() - self.spawned
            self.playing.client_started(min(elapsed, self.subject.startup_allowance))
            self.spawned = None

    async def play(self, play: Play) -> None:
        self.playing = play
        site = LoopbackSite(self._control_app(play))
        await site.start()
        try:
            with tempfile.TemporaryDirectory(prefix="freshtoken-command-") as tmp:
                steps_file = Path(tmp) / "steps.json"
                scenario = self.env.scenario
                document = steps_document(
                    scenario.name, scenario.setup.protocol_version, play.steps
                )
                steps_file.write_text(json.dumps(document, indent=1))
                library = self.subject.faketime
                if library is not None and not self.subject.via_proxy:
                    self.clock_file = _ClockFile(Path(tmp) / "clock", self.env.clock)
                await self._run(play, site.url, steps_file, library)
        finally:
            await site.stop()

    # -- the control endpoints -----------------------------------------------------------------

    def _control_app(self, play: Play) -> web.Application:
        app = web.Application()
        lock = asyncio.Lock()

        def refuse(status: int, message: str) -> web.Response:
            self.violations.append(message)
            return web.json_response({"error": message}, status=status)

        def index_of(request: web.Request) -> int | web.Response:
            self._contact()
            try:
                index = int(request.match_info["index"])
            except ValueError:
                return refuse(400, f"{request.path}: the step index must be an integer")
            if not 0 <= index < len(play.steps):
                return refuse(404, f"{request.path}: there is no step {index}")
            return index

        async def body_of(request: web.Request, definition: str) -> Any:
            try:
                body = await request.json()
            except (ValueError, RecursionError):
                return refuse(400, f"{request.path}: the body must be JSON")
            why = _invalid(definition, body)
            return refuse(400, f"{request.path}: {why}") if why is not None else body

        async def step(request: web.Request) -> web.Response:
            index = index_of(request)
            if isinstance(index, web.Response):
                return index
            async with lock:
                try:
                    play.check_runner_step(index)
                    await play.runner_step(index)
                except ProtocolViolation as exc:
                    return refuse(exc.status, f"/step/{index}: {exc}")
                if self.clock_file is not None:
                    self.clock_file.sync()
            return web.json_response({"done": index})

        async def result(request: web.Request) -> web.Response:
            index = index_of(request)
            if isinstance(index, web.Response):
                return index
            body = await body_of(request, "result")
            if isinstance(body, web.Response):
                return body
            try:
                remaining = play.report_call(index, body)
            except ProtocolViolation as exc:
                return refuse(exc.status, f"/result/{index}: {exc}")
            return web.json_response({"recorded": index, "remaining": remaining})

        async def event(request: web.Request) -> web.Response:
            self._contact()
            body = await body_of(request, "event")
            if isinstance(body, web.Response):
                return body
            step_index = body.get("step")
            if step_index is not None and step_index >= len(play.steps):
                return refuse(404, f"/event: there is no step {step_index}")
            seq = play.client_event(body["event"], step_index, body.get("detail") or {})
            return web.json_response({"recorded": seq})

        app.router.add_post("/step/{index}", step)
        app.router.add_post("/result/{index}", result)
        app.router.add_post("/event", event)
        return app

    # -- the process -----------------------------------------------------------------------------

    def _variables(self, control_url: str, steps_file: Path, library: str | None) -> dict[str, str]:
        env, subject = self.env, self.subject
        scenario = env.scenario
        deadline = min(
            subject.timeout, scenario.invariants.max_duration + subject.startup_allowance
        )
        variables = {
            "FRESHTOKEN_PROTOCOL": str(PROTOCOL),
            "FRESHTOKEN_SCENARIO": scenario.name,
            "FRESHTOKEN_STEPS": str(steps_file),
            "FRESHTOKEN_CONTROL_URL": control_url.rstrip("/"),
            "FRESHTOKEN_MCP_URL": self.url,
            "FRESHTOKEN_UPSTREAM_URL": env.mcp_url,
            "FRESHTOKEN_VIA_PROXY": "1" if subject.via_proxy else "0",
            "FRESHTOKEN_PROTOCOL_VERSION": scenario.setup.protocol_version,
            "FRESHTOKEN_RESPONSE_MODE": scenario.setup.response_mode,
            "FRESHTOKEN_CLOCK": "faketime" if self.clock_file is not None else "system",
            "FRESHTOKEN_STEP_TIMEOUT": f"{STEP_TIMEOUT:g}",
            "FRESHTOKEN_DEADLINE": f"{deadline:g}",
            # A Python client's output is then complete even when it is killed.
            "PYTHONUNBUFFERED": "1",
        }
        if not subject.via_proxy:
            variables |= {
                "FRESHTOKEN_ISSUER": env.issuer,
                "FRESHTOKEN_TOKEN_ENDPOINT": env.token_endpoint,
                "FRESHTOKEN_CLIENT_ID": env.client_id,
                "FRESHTOKEN_CLIENT_SECRET": env.client_secret,
                "FRESHTOKEN_ACCESS_TOKEN": env.access_token,
                "FRESHTOKEN_REFRESH_TOKEN": env.refresh_token or "",
                "FRESHTOKEN_SCOPE": env.scope or "",
                "FRESHTOKEN_RESOURCE": env.resource or "",
            }
            if env.expires_at is not None:
                left = env.expires_at - env.clock.time()
                variables["FRESHTOKEN_EXPIRES_IN"] = f"{left:g}"
                variables["FRESHTOKEN_EXPIRES_AT"] = f"{time.time() + left:.3f}"
        if env.ca_path is not None:
            variables["FRESHTOKEN_CA_FILE"] = env.ca_path
        if self.clock_file is not None and library is not None:
            preload = os.environ.get("LD_PRELOAD", "")
            variables |= {
                "LD_PRELOAD": f"{library} {preload}".strip(),
                "FAKETIME_TIMESTAMP_FILE": str(self.clock_file.path),
                "FAKETIME_NO_CACHE": "1",
                # Only the wall clock moves: timeouts and event loops keep real time.
                "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            }
        return variables

    async def _run(
        self, play: Play, control_url: str, steps_file: Path, library: str | None
    ) -> None:
        argv = self.subject.argv
        variables = self._variables(control_url, steps_file, library)
        self.env.timeline.record("client", "command.start", argv0=Path(argv[0]).name)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env={**os.environ, **variables},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=sys.platform != "win32",
            )
        except OSError as exc:
            raise ConfigError(f"--command: cannot run {argv[0]!r}: {exc.strerror or exc}") from None
        self.spawned = asyncio.get_running_loop().time()
        self.env.timeline.record("client", "command.pid", pid=process.pid)
        output = _Output(self.subject.echo)
        assert process.stdout is not None
        pump = asyncio.ensure_future(output.pump(process.stdout))
        timed_out = cancelled = False
        try:
            await asyncio.wait_for(process.wait(), self.subject.timeout)
        except TimeoutError:
            timed_out = True
            await _stop(process)
        except asyncio.CancelledError:
            cancelled = True
            await _stop(process)
            raise
        finally:
            self._contact()  # a command that never asked for anything started up all along
            # Whatever it left behind in its group goes too: nothing outlives the scenario.
            _signal_group(process, _KILL)
            if process.returncode is None:
                await process.wait()
            # The pipe ends once every holder is gone; one that escaped the group is not waited for.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(pump), 1.0)
            pump.cancel()
            run = CommandRun(
                argv0=Path(argv[0]).name,
                pid=process.pid,
                status=process.returncode,
                timed_out=timed_out,
                cancelled=cancelled,
                output=output.text(),
                dropped=output.dropped,
                clock=variables["FRESHTOKEN_CLOCK"],
                violations=tuple(self.violations),
            )
            self.subject.runs.append(run)
            play.command_ran(run)
            self.env.timeline.record(
                "client", "command.exit", status=process.returncode, timed_out=timed_out
            )


_TERM: Final = signal.SIGTERM
_KILL: Final = getattr(signal, "SIGKILL", signal.SIGTERM)


def _signal_group(process: asyncio.subprocess.Process, sig: int) -> None:
    if sys.platform == "win32":
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        return
    # The command leads its own group (start_new_session), so its pid is the group id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to the group, then SIGKILL after :data:`STOP_GRACE` real seconds."""
    _signal_group(process, _TERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE)
    except TimeoutError:
        _signal_group(process, _KILL)
        await process.wait()
