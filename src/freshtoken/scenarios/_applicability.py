"""Whom a scenario judges, and whether it applies to a subject.

A scenario judges a *role*: ``proxy`` (a token-injecting proxy between a client and the server,
which must hide token trouble from the client: read auth failures inside a 200, replay once,
guard against DNS rebinding, pass a 403 through untouched) or ``client`` (a client managing its
own tokens against the server, judged by what a client owes: refresh silently, once; a step-up
on 403 is its right). It may also need MCP revisions and a subject that sees the scenario's
clock move. A subject declares the same things in its :class:`SubjectProfile`; a scenario that
does not fit is *not applicable*, with the reason, never an unreachable failure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Final, Literal, get_args

from pydantic.dataclasses import dataclass
from pydantic.functional_validators import AfterValidator

from freshtoken._schema import MODEL_CONFIG
from freshtoken._setup import PROTOCOL_VERSIONS, ProtocolVersion

if TYPE_CHECKING:
    from freshtoken.scenarios._model import Scenario

__all__ = [
    "ANY_SUBJECT",
    "NEEDS",
    "ROLES",
    "Applicability",
    "Need",
    "Role",
    "SubjectProfile",
    "fit",
]

Role = Literal["proxy", "client"]
Need = Literal["clock"]

ROLES: Final[dict[Role, str]] = {
    "proxy": "a token-injecting proxy",
    "client": "a client managing its own tokens",
}
"""Each role, as a sentence names it."""
NEEDS: Final[dict[Need, str]] = {
    "clock": "a subject that sees the scenario's clock move",
}


def _distinct(values: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(values)) != len(values):
        raise ValueError("lists a value twice")
    return values


def _some_roles(roles: tuple[str, ...]) -> tuple[str, ...]:
    if not roles:
        raise ValueError(f"needs at least one of {', '.join(get_args(Role))}")
    return _distinct(roles)


@dataclass(config=MODEL_CONFIG)
class Applicability:
    """The ``[applicability]`` table of a scenario file.

    * ``roles`` — whom the scenario judges: ``"proxy"``, ``"client"`` or both (the default);
    * ``revisions`` — the MCP revisions it is meaningful on; it runs on the setup's
      ``protocol_version`` (which must be listed), or on the newest listed one the subject
      speaks (default: the setup's revision only);
    * ``needs`` — ``"clock"``: the subject must see the scenario's manual clock move (an expiry
      it is expected to notice before sending the expired token);
    * ``why`` — one line saying why a role is left out (shown when the scenario does not apply).
    """

    roles: Annotated[tuple[Role, ...], AfterValidator(_some_roles)] = ("proxy", "client")
    revisions: Annotated[tuple[ProtocolVersion, ...], AfterValidator(_distinct)] = ()
    needs: Annotated[tuple[Need, ...], AfterValidator(_distinct)] = ()
    why: str = ""


@dataclasses.dataclass(frozen=True)
class SubjectProfile:
    """What a subject is, for applicability: the roles it can be judged in, the MCP revisions it
    speaks, and whether it sees the scenario's clock (``clock_note`` says why not)."""

    roles: frozenset[Role]
    revisions: frozenset[str] = frozenset(PROTOCOL_VERSIONS)
    sees_clock: bool = True
    clock_note: str = ""

    @classmethod
    def of(
        cls,
        roles: Iterable[Role],
        revisions: Iterable[str] = PROTOCOL_VERSIONS,
        *,
        sees_clock: bool = True,
        clock_note: str = "",
    ) -> SubjectProfile:
        return cls(frozenset(roles), frozenset(revisions), sees_clock, clock_note)

    def describe(self) -> str:
        """The roles as a sentence names them."""
        return " or ".join(ROLES[role] for role in get_args(Role) if role in self.roles)


ANY_SUBJECT: Final = SubjectProfile.of(get_args(Role))
"""The profile of a subject that declares none: judged by every scenario, on every revision."""


def revisions_of(scenario: Scenario) -> tuple[ProtocolVersion, ...]:
    """The revisions ``scenario`` is meaningful on (its setup's when it lists none)."""
    return scenario.applicability.revisions or (scenario.setup.protocol_version,)


def fit(scenario: Scenario, profile: SubjectProfile) -> Scenario | str:
    """``scenario`` as it runs on a subject with ``profile`` (on a revision both speak), or the
    reason it does not apply."""
    wanted = scenario.applicability
    if not set(wanted.roles) & profile.roles:
        judged = " and ".join(ROLES[role] for role in wanted.roles)
        reason = f"judges {judged}; the subject is {profile.describe()}"
        return f"{reason} ({wanted.why})" if wanted.why else reason
    if "clock" in wanted.needs and not profile.sees_clock:
        note = f" ({profile.clock_note})" if profile.clock_note else ""
        return f"needs {NEEDS['clock']}; the subject does not{note}"
    setup = scenario.setup
    if setup.protocol_version in profile.revisions:
        return scenario
    shared = [r for r in revisions_of(scenario) if r in profile.revisions]
    if not shared:
        return (
            f"needs MCP revision {' or '.join(revisions_of(scenario))}; "
            f"the subject speaks {', '.join(sorted(profile.revisions)) or 'none'}"
        )
    # Revisions are dates: the newest shared one is the closest to what the scenario was written for.
    revision = max(shared)
    return dataclasses.replace(
        scenario, setup=dataclasses.replace(setup, protocol_version=revision)
    )
