"""Subjects: the things a scenario is run against.

A subject turns the running fakes (:class:`~freshtoken.scenarios.Environment`) into a session
that plays the scenario's steps. Built-in subjects drive the scenario with the built-in MCP
client; the ``command`` subject hands the steps to an external program (:mod:`._command`). Each
declares what it is (:class:`~freshtoken.scenarios.SubjectProfile`), which decides the scenarios
that apply to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from freshtoken._errors import ConfigError
from freshtoken._timeline import Timeline
from freshtoken.scenarios._applicability import SubjectProfile
from freshtoken.scenarios._client import ClientAuth, McpClient
from freshtoken.scenarios._command import COMMAND_REVISIONS, ClockMode, CommandSubject
from freshtoken.scenarios._mutants import MUTANT_PREFIX, mutant_subjects
from freshtoken.scenarios._sdk_subjects import SDK_SUBJECTS, sdk_subject
from freshtoken.scenarios._session import ClientSession, Environment, Subject, SubjectSession
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
    "buggy_subjects",
    "builtin_subjects",
    "get_subject",
]

_PROXY_PROFILE = SubjectProfile.of(["proxy"])
# The reference subjects are token layers with one flaw each, standing in for a proxy or a client
# with that bug: they are judged in both roles, on every revision.
_REFERENCE_PROFILE = SubjectProfile.of(["proxy", "client"])


@dataclass(frozen=True)
class _ProxySubject:
    name: str = "proxy"
    description: str = "freshtoken's proxy in front of the MCP server; the client holds no token"
    profile: SubjectProfile = _PROXY_PROFILE

    @asynccontextmanager
    async def session(self, env: Environment) -> AsyncIterator[SubjectSession]:
        url = await _through_proxy(env)
        async with McpClient(
            url, timeline=env.timeline, protocol_version=env.scenario.setup.protocol_version
        ) as client:
            yield ClientSession(client)


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
    profile: SubjectProfile = field(default=_REFERENCE_PROFILE)

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
                yield ClientSession(client)
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
    name: str,
    *,
    command: str | Sequence[str] | None = None,
    via_proxy: bool = False,
    revisions: Sequence[str] | None = None,
    clock: ClockMode = "system",
    echo: Callable[[str], None] | None = None,
    sdk_dir: str | Path | None = None,
    notice: Callable[[str], None] | None = None,
) -> Subject:
    """The subject called ``name``. ``command`` needs the command line to run (with
    ``via_proxy``, the MCP ``revisions`` it speaks, its ``clock`` and an ``echo`` for its output;
    see :class:`CommandSubject`); it is checked here, so a command that cannot start is one
    :class:`ConfigError`. ``mutant:NAME`` is a targeted mutant (:func:`mutant_subjects`).
    ``python-sdk`` and ``typescript-sdk`` are the official SDK clients (with ``via_proxy``,
    ``echo``, and for TypeScript ``sdk_dir`` and ``notice``; see :func:`sdk_subject`)."""
    if name in SDK_SUBJECTS:
        return sdk_subject(name, via_proxy=via_proxy, sdk_dir=sdk_dir, notice=notice, echo=echo)
    if name == "command":
        if not command:
            raise ConfigError("--subject command: needs --command CMD")
        subject = CommandSubject(
            command,
            via_proxy=via_proxy,
            revisions=tuple(revisions or COMMAND_REVISIONS),
            clock=clock,
            echo=echo,
        )
        subject.check()
        return subject
    subjects = builtin_subjects()
    if name.startswith(MUTANT_PREFIX):
        mutants = mutant_subjects()
        if name not in mutants:
            raise ConfigError(f"--subject: unknown mutant {name!r} (one of {', '.join(mutants)})")
        return mutants[name]
    if name not in subjects:
        raise ConfigError(
            f"--subject: unknown subject {name!r} "
            f"(one of {', '.join([*subjects, 'command', *SDK_SUBJECTS])}, or {MUTANT_PREFIX}NAME)"
        )
    return subjects[name]
