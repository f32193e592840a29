"""Subjects: the things a scenario is run against.

A subject turns the running fakes (:class:`Environment`) into a :class:`SubjectSession`, which
plays the scenario's steps through a :class:`Play`. Built-in subjects drive the scenario with
the built-in MCP client; the ``command`` subject hands the steps to an external program.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from freshtoken._clock import ManualClock
from freshtoken._errors import ConfigError
from freshtoken._serve import LoopbackSite
from freshtoken._timeline import Timeline
from freshtoken.scenarios._client import ClientAuth, McpClient
from freshtoken.scenarios._harness import Harness
from freshtoken.scenarios._model import Scenario, Step, step_to_json
from freshtoken.scenarios._tokens import (
    BakedBearer,
    Credentials,
    NoSingleFlight,
    RefreshOn401Only,
    RefreshOn403,
    RetryForever,
    SubstringMatch,
)

__all__ = [
    "CommandSubject",
    "Environment",
    "Play",
    "Subject",
    "SubjectSession",
    "buggy_subjects",
    "builtin_subjects",
    "get_subject",
]


@dataclass(frozen=True)
class Environment:
    """The running fakes as a subject sees them: URLs, credentials, CA, clock and timeline.

    ``access_token``/``refresh_token`` were freshly issued by the fake authorization server for
    this run (``expires_at``, on ``clock``, when the server reported ``expires_in``);
    ``ca_path``/``client_ssl`` are set when the scenario runs over TLS. ``harness`` built it all
    (a subject starts freshtoken's proxy through it).
    """

    scenario: Scenario
    harness: Harness
    mcp_url: str
    token_endpoint: str
    client_id: str
    client_secret: str
    access_token: str
    refresh_token: str | None
    timeline: Timeline
    clock: ManualClock
    ca_path: str | None = None
    client_ssl: ssl.SSLContext | None = None
    expires_at: float | None = None

    @classmethod
    def of(cls, scenario: Scenario, harness: Harness) -> Environment:
        """The environment of a running ``harness`` (its fakes started, on a manual clock)."""
        if not isinstance(harness.clock, ManualClock):
            raise TypeError("scenarios run on a ManualClock; the harness has another clock")
        authorization, pair = harness.authorization_server, harness.seeded
        return cls(
            scenario=scenario,
            harness=harness,
            mcp_url=harness.mcp_server.url,
            token_endpoint=authorization.token_endpoint,
            client_id=authorization.client_id,
            client_secret=authorization.client_secret,
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            timeline=harness.timeline,
            clock=harness.clock,
            ca_path=str(harness.ca.ca_path) if harness.ca is not None else None,
            client_ssl=harness.client_ssl,
            expires_at=harness.seeded_expires_at(),
        )

    @property
    def verify(self) -> ssl.SSLContext | bool:
        return self.client_ssl if self.client_ssl is not None else True

    def credentials(self) -> Credentials:
        return Credentials(
            token_endpoint=self.token_endpoint,
            client_id=self.client_id,
            client_secret=self.client_secret,
            access_token=self.access_token,
            refresh_token=self.refresh_token,
            verify=self.verify,
        )


class Play(Protocol):
    """What the runner offers a session: run one step, or record what an external client saw."""

    @property
    def steps(self) -> Sequence[Step]: ...

    async def client_step(self, index: int, client: McpClient) -> None:
        """Run client step ``index`` with ``client``."""
        ...

    async def runner_step(self, index: int) -> None:
        """Run a fault, clock, wait or restart step (or drive the clock for a ``join``)."""
        ...

    def report_call(self, index: int, outcome: Mapping[str, Any]) -> None:
        """Record how an external client's call for step ``index`` ended."""
        ...


class SubjectSession(Protocol):
    """One run of a subject: plays the steps, then is closed by its context manager."""

    async def play(self, play: Play) -> None: ...


class Subject(Protocol):
    """A named thing under test."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    def session(self, env: Environment) -> AbstractAsyncContextManager[SubjectSession]: ...


class _ClientSession:
    def __init__(self, client: McpClient) -> None:
        self.client = client

    async def play(self, play: Play) -> None:
        for index, step in enumerate(play.steps):
            if step.client_step:
                await play.client_step(index, self.client)
            else:
                await play.runner_step(index)


@dataclass(frozen=True)
class _ProxySubject:
    name: str = "proxy"
    description: str = "freshtoken's proxy in front of the MCP server; the client holds no token"

    @asynccontextmanager
    async def session(self, env: Environment) -> AsyncIterator[SubjectSession]:
        url = await _through_proxy(env)
        async with McpClient(
            url, timeline=env.timeline, protocol_version=env.scenario.setup.protocol_version
        ) as client:
            yield _ClientSession(client)


async def _through_proxy(env: Environment) -> str:
    """freshtoken's proxy in front of the environment's MCP server; the client's URL.

    The proxy closes with the harness, after the subject's session.
    """
    await env.harness.start_proxy()
    return env.harness.proxy_url


AuthFactory = Callable[[Credentials, Timeline], "_ClosableAuth"]


class _ClosableAuth(ClientAuth, Protocol):
    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class _ReferenceSubject:
    name: str
    description: str
    auth: AuthFactory

    @asynccontextmanager
    async def session(self, env: Environment) -> AsyncIterator[SubjectSession]:
        auth = self.auth(env.credentials(), env.timeline)
        try:
            async with McpClient(
                env.mcp_url,
                timeline=env.timeline,
                protocol_version=env.scenario.setup.protocol_version,
                auth=auth,
                verify=env.verify,
            ) as client:
                yield _ClientSession(client)
        finally:
            await auth.aclose()


def _reference(name: str, cls: Any) -> _ReferenceSubject:
    return _ReferenceSubject(
        name=name,
        description=(cls.__doc__ or "").split("\n\n")[0].replace("\n   ", "").strip(),
        auth=lambda credentials, timeline: cls(credentials, timeline, actor="client"),
    )


_BUGGY: tuple[str, ...] = (
    "baked-bearer",
    "refresh-on-401-only",
    "no-single-flight",
    "retry-forever",
    "substring-match",
    "refresh-on-403",
)


def buggy_subjects() -> tuple[str, ...]:
    """Names of the deliberately buggy reference subjects the catalogue is tested against."""
    return _BUGGY


def builtin_subjects() -> dict[str, Subject]:
    """Every built-in subject by name (``proxy`` first, then the buggy references)."""
    subjects: dict[str, Subject] = {"proxy": _ProxySubject()}
    for name, cls in zip(
        _BUGGY,
        (BakedBearer, RefreshOn401Only, NoSingleFlight, RetryForever, SubstringMatch, RefreshOn403),
        strict=True,
    ):
        subjects[name] = _reference(name, cls)
    return subjects


def get_subject(
    name: str, *, command: str | Sequence[str] | None = None, via_proxy: bool = False
) -> Subject:
    """The subject called ``name``; ``command`` needs the command line to run."""
    if name == "command":
        if not command:
            raise ConfigError("--subject command: needs --command CMD")
        return CommandSubject(command, via_proxy=via_proxy)
    subjects = builtin_subjects()
    if name not in subjects:
        raise ConfigError(
            f"--subject: unknown subject {name!r} (one of {', '.join([*subjects, 'command'])})"
        )
    return subjects[name]


# -- the command subject -------------------------------------------------------------------


@dataclass
class CommandSubject:
    """An external MCP client (any language) run as a command.

    The command gets everything in environment variables: ``FRESHTOKEN_MCP_URL`` (the proxy's
    URL with ``via_proxy``, else the MCP server's), ``FRESHTOKEN_UPSTREAM_URL``,
    ``FRESHTOKEN_TOKEN_ENDPOINT``, ``FRESHTOKEN_CLIENT_ID``, ``FRESHTOKEN_CLIENT_SECRET``,
    ``FRESHTOKEN_ACCESS_TOKEN``, ``FRESHTOKEN_REFRESH_TOKEN``, ``FRESHTOKEN_CA_FILE`` (TLS only),
    ``FRESHTOKEN_PROTOCOL_VERSION``, ``FRESHTOKEN_SCENARIO`` (the name), ``FRESHTOKEN_STEPS`` (a
    JSON file: the steps, each with ``"by": "client"`` or ``"runner"``) and
    ``FRESHTOKEN_CONTROL_URL``. The command performs the client steps in order; for each runner
    step it POSTs to ``$FRESHTOKEN_CONTROL_URL/step/<index>`` (answered when the step is done),
    and it reports each call's end to ``$FRESHTOKEN_CONTROL_URL/result/<index>`` with JSON
    ``{"ok": bool, "status": int, "progress": [numbers]}``. A ``join`` step is both: the
    command POSTs it (the runner moves the clock while the server sleeps on it), then waits for
    its own background calls.
    """

    command: str | Sequence[str]
    via_proxy: bool = False
    timeout: float = 30.0
    name: str = "command"
    description: str = "an external MCP client run as a command"
    output: list[str] = field(default_factory=list)

    @asynccontextmanager
    async def session(self, env: Environment) -> AsyncIterator[SubjectSession]:
        url = await _through_proxy(env) if self.via_proxy else env.mcp_url
        yield _CommandSession(self, env, url)

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.command) if isinstance(self.command, str) else list(self.command)


class _CommandSession:
    def __init__(self, subject: CommandSubject, env: Environment, url: str) -> None:
        self.subject = subject
        self.env = env
        self.url = url

    async def play(self, play: Play) -> None:
        app = web.Application()
        lock = asyncio.Lock()

        async def step(request: web.Request) -> web.Response:
            index = _index(request, play)
            if play.steps[index].client_step and play.steps[index].kind != "join":
                raise web.HTTPBadRequest(text=f"step {index} is the client's to perform")
            async with lock:
                await play.runner_step(index)
            return web.json_response({"done": index})

        async def result(request: web.Request) -> web.Response:
            index = _index(request, play)
            try:
                body = await request.json()
            except ValueError:
                raise web.HTTPBadRequest(text="result body must be JSON") from None
            if not isinstance(body, dict):
                raise web.HTTPBadRequest(text="result body must be a JSON object")
            play.report_call(index, body)
            return web.json_response({"recorded": index})

        app.router.add_post("/step/{index}", step)
        app.router.add_post("/result/{index}", result)
        site = LoopbackSite(app)
        await site.start()
        with tempfile.TemporaryDirectory(prefix="freshtoken-steps-") as tmp:
            steps_file = Path(tmp) / "steps.json"
            steps_file.write_text(json.dumps(steps_to_json(play.steps), indent=1))
            try:
                await self._run(site.url, steps_file)
            finally:
                await site.stop()

    async def _run(self, control_url: str, steps_file: Path) -> None:
        env = self.env
        variables = {
            "FRESHTOKEN_MCP_URL": self.url,
            "FRESHTOKEN_UPSTREAM_URL": env.mcp_url,
            "FRESHTOKEN_TOKEN_ENDPOINT": env.token_endpoint,
            "FRESHTOKEN_CLIENT_ID": env.client_id,
            "FRESHTOKEN_CLIENT_SECRET": env.client_secret,
            "FRESHTOKEN_ACCESS_TOKEN": env.access_token,
            "FRESHTOKEN_REFRESH_TOKEN": env.refresh_token or "",
            "FRESHTOKEN_PROTOCOL_VERSION": env.scenario.setup.protocol_version,
            "FRESHTOKEN_SCENARIO": env.scenario.name,
            "FRESHTOKEN_STEPS": str(steps_file),
            "FRESHTOKEN_CONTROL_URL": control_url,
            "FRESHTOKEN_VIA_PROXY": "1" if self.subject.via_proxy else "0",
        }
        if env.ca_path is not None:
            variables["FRESHTOKEN_CA_FILE"] = env.ca_path
        argv = self.subject.argv
        env.timeline.record("client", "command.start", argv0=Path(argv[0]).name)
        process = await asyncio.create_subprocess_exec(
            *argv,
            env={**os.environ, **variables},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), self.subject.timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            env.timeline.record("client", "command.timeout", timeout=self.subject.timeout)
            return
        text = output.decode(errors="replace")
        self.subject.output.append(text)
        env.timeline.record("client", "command.exit", status=process.returncode)
        if process.returncode and text.strip():
            tail = text.strip().splitlines()[-1]
            env.timeline.record("client", "command.output", last_line=tail[:200])


def _index(request: web.Request, play: Play) -> int:
    try:
        index = int(request.match_info["index"])
    except ValueError:
        raise web.HTTPBadRequest(text="step index must be an integer") from None
    if not 0 <= index < len(play.steps):
        raise web.HTTPNotFound(text=f"no step {index}")
    return index


def steps_to_json(steps: Sequence[Step]) -> list[dict[str, Any]]:
    """The steps as plain JSON objects (what the ``command`` subject's client reads)."""
    out: list[dict[str, Any]] = []
    for index, step in enumerate(steps):
        by = "client" if step.client_step and step.kind != "join" else "runner"
        out.append({"index": index, "by": by, **step_to_json(step)})
    return out
