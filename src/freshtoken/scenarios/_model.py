"""The scenario model: frozen, validated data, constructible from Python or loaded from TOML.

Every class is a pydantic dataclass on :data:`~freshtoken._schema.MODEL_CONFIG`, so one rule per
field holds wherever a scenario comes from: unknown keys are refused, numbers are finite, counts
are whole numbers, durations are not negative. A step is one of the step classes, told apart in a
file by its ``step`` key (and, for ``step = "fault"``, by ``target``); the :data:`Step` union picks
the class itself so error paths read ``steps[2].pace``, never a union member's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidatorFunctionWrapHandler
from pydantic import TypeAdapter as _TypeAdapter
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo
from pydantic.functional_validators import AfterValidator, WrapValidator

from freshtoken._schema import (
    MODEL_CONFIG,
    Count,
    Flag,
    PositiveCount,
    PositiveSeconds,
    Seconds,
)
from freshtoken._setup import Setup
from freshtoken.fakes import Fault
from freshtoken.scenarios._applicability import Applicability, revisions_of

__all__ = [
    "STEP_KINDS",
    "Advance",
    "AuthorizationControl",
    "Burst",
    "Call",
    "Disconnect",
    "Initialize",
    "Invariants",
    "Join",
    "McpFault",
    "OpenGetStream",
    "Restart",
    "Resume",
    "Scenario",
    "Setup",
    "Step",
    "Stream",
    "Wait",
    "step_to_json",
]

Expectation = Literal["result", "error", "any"]
HttpStatus = Annotated[StrictInt, Field(ge=100, le=599)]


def _text() -> dict[str, Any]:
    return {"text": "hello"}


def _burst_text() -> dict[str, Any]:
    return {"text": "burst"}


@dataclass(config=MODEL_CONFIG)
class Initialize:
    """The client initializes (and sends ``notifications/initialized``)."""

    kind: ClassVar[str] = "initialize"
    client_step: ClassVar[bool] = True


@dataclass(config=MODEL_CONFIG)
class Call:
    """One ``tools/call``. ``expect`` says what the client should end up with.

    ``expect_status`` pins the HTTP status the client must see (e.g. a 403 passed through);
    ``origin``/``host`` send those headers (for DNS-rebinding checks); ``background`` starts the
    call and moves on (join it with a later ``join`` or at the end of the scenario).
    """

    tool: str = "echo"
    arguments: dict[str, Any] = Field(default_factory=_text)
    expect: Expectation = "result"
    expect_status: HttpStatus | None = None
    origin: str | None = None
    host: str | None = None
    background: Flag = False
    kind: ClassVar[str] = "call"
    client_step: ClassVar[bool] = True


@dataclass(config=MODEL_CONFIG)
class Stream:
    """Call the ``stream`` tool: ``count`` progress notifications, ``pace`` clock-seconds apart.

    Always runs in the background, because with a manual clock it only moves when time does.
    """

    count: PositiveCount = 3
    pace: Seconds = 1.0
    expect: Expectation = "result"
    kind: ClassVar[str] = "stream"
    client_step: ClassVar[bool] = True


@dataclass(config=MODEL_CONFIG)
class Burst:
    """``n`` concurrent ``tools/call`` requests, all expected to end with a result."""

    n: PositiveCount = 5
    tool: str = "echo"
    arguments: dict[str, Any] = Field(default_factory=_burst_text)
    kind: ClassVar[str] = "burst"
    client_step: ClassVar[bool] = True


@dataclass(config=MODEL_CONFIG)
class OpenGetStream:
    """Open the standalone GET SSE stream and keep it open in the background.

    ``background`` goes on without waiting for the stream's response headers (a server may hold
    them back, as a slow proxy or a busy server does, while other requests must go through).
    """

    background: Flag = False
    kind: ClassVar[str] = "open_get_stream"
    client_step: ClassVar[bool] = True


@dataclass(config=MODEL_CONFIG)
class Resume:
    """Resume the most recently cut stream by GET with ``Last-Event-ID``, as the transport spec says."""

    kind: ClassVar[str] = "resume"
    client_step: ClassVar[bool] = True


@dataclass(config=MODEL_CONFIG)
class Disconnect:
    """The client goes away: every background call still in flight is abandoned mid-response."""

    kind: ClassVar[str] = "disconnect"
    client_step: ClassVar[bool] = True


@dataclass(config=MODEL_CONFIG)
class McpFault:
    """Add one fault-plan entry (a :class:`freshtoken.fakes.Fault`) to the fake MCP server.

    In a file the fault's keys sit on the step itself: ``step = "fault"``, ``match``,
    ``action``, ``times``.
    """

    fault: Fault
    kind: ClassVar[str] = "fault"
    client_step: ClassVar[bool] = False


AuthorizationAction = Literal["rotate", "expire", "revoke", "fail_next", "replay_refresh"]


@dataclass(config=MODEL_CONFIG)
class AuthorizationControl:
    """Drive the fake authorization server.

    ``rotate`` invalidates every access token now; ``expire`` expires the seeded access token;
    ``revoke`` revokes the seeded grant family; ``fail_next`` fails the next ``times`` token requests
    (``status``, ``error``, ``delay``, ``reset``, ``garbage``, ``lose_response``: processed, then
    the answer is lost); ``replay_refresh`` presents the
    seeded refresh token again, as a leaked or stale copy would (reuse detection).
    """

    action: AuthorizationAction
    times: PositiveCount = 1
    status: HttpStatus = 503
    error: str | None = "temporarily_unavailable"
    delay: Seconds = 0.0
    reset: Flag = False
    garbage: Flag = False
    lose_response: Flag = False
    kind: ClassVar[str] = "authorization"
    client_step: ClassVar[bool] = False


@dataclass(config=MODEL_CONFIG)
class Advance:
    """Move the shared manual clock forward.

    With ``when_sleeping`` it first waits (up to 2 real seconds) until something sleeps on the
    clock, so a stream that has not reached its first pause yet does not miss the tick.
    """

    seconds: Seconds
    when_sleeping: Flag = False
    kind: ClassVar[str] = "advance"
    client_step: ClassVar[bool] = False


@dataclass(config=MODEL_CONFIG)
class Wait:
    """Wait (bounded, in real seconds) until ``count`` timeline events ``event`` of ``actor`` exist."""

    event: str
    actor: str | None = None
    count: PositiveCount = 1
    timeout: PositiveSeconds = 5.0
    kind: ClassVar[str] = "wait"
    client_step: ClassVar[bool] = False


@dataclass(config=MODEL_CONFIG)
class Join:
    """Wait for every background call to finish, advancing the clock ``advance`` seconds each
    time something sleeps on it (streams move only when time does). Bounded by ``timeout``."""

    advance: PositiveSeconds = 1.0
    timeout: PositiveSeconds = 5.0
    kind: ClassVar[str] = "join"
    client_step: ClassVar[bool] = True


@dataclass(config=MODEL_CONFIG)
class Restart:
    """The fake MCP server restarts: every session is dropped."""

    kind: ClassVar[str] = "restart"
    client_step: ClassVar[bool] = False


_STEP_CLASSES: Final = (
    Initialize,
    Call,
    Stream,
    Burst,
    OpenGetStream,
    Resume,
    Disconnect,
    McpFault,
    AuthorizationControl,
    Advance,
    Wait,
    Join,
    Restart,
)

_AnyStep = (
    Initialize
    | Call
    | Stream
    | Burst
    | OpenGetStream
    | Resume
    | Disconnect
    | McpFault
    | AuthorizationControl
    | Advance
    | Wait
    | Join
    | Restart
)

STEP_KINDS: Final[tuple[str, ...]] = tuple(
    sorted({cls.kind for cls in _STEP_CLASSES if cls is not AuthorizationControl})
)
"""The values of a step's ``step`` key in a scenario file."""

_BY_KIND: Final[Mapping[str, type[Any]]] = {
    cls.kind: cls for cls in _STEP_CLASSES if cls not in (McpFault, AuthorizationControl)
}


class _Tag(BaseModel):
    # Validating the tag keys through a model makes a bad one an error at its own path
    # (steps[3].step), with pydantic's list of allowed values.
    model_config = ConfigDict(extra="ignore", frozen=True)

    step: Literal[STEP_KINDS]  # type: ignore[valid-type]
    target: Literal["mcp", "as"] = "mcp"


def _pick_step(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    if isinstance(value, _STEP_CLASSES):
        return value
    if not isinstance(value, Mapping):
        raise ValueError("must be a table with a step key")
    tag = _Tag.model_validate(value)
    fields = {key: item for key, item in value.items() if key != "step"}
    if tag.step != "fault":
        return _adapter(_BY_KIND[tag.step]).validate_python(fields)
    fields.pop("target", None)
    if tag.target == "as":
        return _adapter(AuthorizationControl).validate_python(fields)
    # The fault's own keys sit on the step, so its errors read steps[1].action.kind.
    return McpFault(fault=Fault.model_validate(fields))


_ADAPTERS: dict[type[Any], _TypeAdapter[Any]] = {}


def _adapter(cls: type[Any]) -> _TypeAdapter[Any]:
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = _TypeAdapter(cls)
    return _ADAPTERS[cls]


Step = Annotated[_AnyStep, WrapValidator(_pick_step)]
"""One scenario step: any of the step classes."""


def _at_least_one(steps: tuple[Any, ...]) -> tuple[Any, ...]:
    # An after-validator rather than min_length: it runs only once every step is valid, so a
    # bad step is reported alone, not also as "too short".
    if not steps:
        raise ValueError("needs at least one step")
    return steps


Steps = Annotated[tuple[Step, ...], AfterValidator(_at_least_one)]
"""A scenario's steps: at least one."""


def step_to_json(step: _AnyStep) -> dict[str, Any]:
    """A step as a plain JSON object in its file form (``{"step": ..., <field>: ...}``), which
    reads back as the same step."""
    if isinstance(step, McpFault):
        return {"step": "fault", "target": "mcp", **step.fault.to_dict()}
    fields = _adapter(type(step)).dump_python(step, mode="json")
    if isinstance(step, AuthorizationControl):
        return {"step": "fault", "target": "as", **fields}
    return {"step": step.kind, **fields}


@dataclass(config=MODEL_CONFIG)
class Invariants:
    """What must hold after the steps ran. ``None`` switches a check off.

    * ``every_call_answered`` — each call ends as its step expected (a result unless told otherwise);
    * ``max_token_requests`` — at most K requests reached the token endpoint (as the fake
      authorization server counts them);
    * ``no_refresh_reuse`` — the authorization server never saw a superseded refresh token;
    * ``max_upstream_sends_per_call`` — the MCP server saw each client call at most this often
      (2 = the original send plus one replay);
    * ``sse_in_order`` — progress notifications arrived in order with none lost;
    * ``max_duration`` — the whole run finished within this many real seconds (no hang);
    * ``status_passed_through`` — every call with ``expect_status`` saw exactly that status;
    * ``no_refresh`` — the authorization server saw no refresh grant from the subject;
    * ``upstream_cancelled`` — the MCP server saw an abandoned stream cancelled;
    * ``cut_visible`` — every stream the built-in client saw end without its response ended
      broken (a reset or an incomplete body), never cleanly, which would hide the truncation
      (not judged for a command, whose client reports no cuts);
    * ``max_upstream_sends`` — the MCP server saw at most this many requests in total;
    * ``max_auth_rejections`` — the MCP server rejected at most this many bearers (0: the subject
      never sent a token it could have known was expired);
    * ``no_relogin`` — no access token was recovered by an interactive grant
      (``authorization_code``) while a usable refresh token was held: refresh, not re-login.
      ``None`` (the default) turns it on where the scenario rotates or expires tokens.
    """

    every_call_answered: Flag = True
    max_token_requests: Count | None = None
    no_refresh_reuse: Flag = True
    max_upstream_sends_per_call: Count | None = 2
    sse_in_order: Flag = True
    max_duration: PositiveSeconds = 10.0
    status_passed_through: Flag = True
    no_refresh: Flag = False
    upstream_cancelled: Flag = False
    cut_visible: Flag = False
    max_upstream_sends: Count | None = None
    max_auth_rejections: Count | None = None
    no_relogin: Flag | None = None


@dataclass(config=MODEL_CONFIG)
class Scenario:
    """A named, reproducible token-rotation situation: setup, steps, invariants.

    ``reproduces`` names the public bug (``repo#number``) or the spec clause it stands for;
    ``property`` says in one line what must hold (what a subject failing it broke);
    ``applicability`` says whom it judges and what it needs; ``source`` is the file it was
    loaded from, if any.
    """

    name: Annotated[str, Field(min_length=1)]
    steps: Steps
    title: str = ""
    reproduces: str = ""
    setup: Setup = Field(default_factory=Setup)
    invariants: Invariants = Field(default_factory=Invariants)
    applicability: Applicability = Field(default_factory=Applicability)
    source: str | None = None

    def __post_init__(self) -> None:
        listed = self.applicability.revisions
        if listed and self.setup.protocol_version not in listed:
            raise ValueError(
                f"applicability.revisions {list(listed)} must include the setup's "
                f"protocol_version {self.setup.protocol_version!r}"
            )

    @property
    def revisions(self) -> tuple[str, ...]:
        """The MCP revisions this scenario is meaningful on."""
        return revisions_of(self)

    @property
    def rotates_tokens(self) -> bool:
        """Whether a step rotates or expires tokens (by a control, a fault or the clock)."""
        elapsed = 0.0
        for step in self.steps:
            if isinstance(step, AuthorizationControl) and step.action in ("rotate", "expire"):
                return True
            if isinstance(step, McpFault) and step.fault.action.kind in ("rotate", "expire"):
                return True
            if isinstance(step, Advance):
                elapsed += step.seconds
        return elapsed >= self.setup.access_ttl

    @property
    def relogin_judged(self) -> bool:
        """Whether ``no_relogin`` applies: as set, else where tokens rotate."""
        flag = self.invariants.no_relogin
        return self.rotates_tokens if flag is None else flag

    def to_toml(self) -> str:
        """This scenario as a scenario file that loads back as an equal scenario: save it into a
        directory and run it with ``pytest --freshtoken-catalogue-dir DIR`` or ``freshtoken
        scenarios run --catalogue DIR``. Settings and step fields at their defaults are left out.

        Raises :class:`ValueError` for an invariant switched off with ``None`` (TOML has no null).
        """
        import tomli_w

        document: dict[str, Any] = {"name": self.name}
        if self.title:
            document["title"] = self.title
        if self.reproduces:
            document["reproduces"] = self.reproduces
        if self.property:
            document["property"] = self.property
        setup = _changed_fields(self.setup)
        if setup:
            document["setup"] = setup
        document["steps"] = [_step_table(step) for step in self.steps]
        invariants = _changed_fields(self.invariants)
        if invariants:
            document["invariants"] = invariants
        applicability = _changed_fields(self.applicability)
        if applicability:
            document["applicability"] = applicability
        return tomli_w.dumps(document)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis (and IPython) print examples through this: one line, not the full repr.
        printer.text(self.summary())

    def summary(self) -> str:
        """One line: the name, each step in a few words, and the setup fields changed."""
        steps = " · ".join(_step_words(step) for step in self.steps)
        changed = ", ".join(f"{k}={v!r}" for k, v in _changed_fields(self.setup).items())
        return f"<Scenario {self.name!r}: {steps}" + (f"; setup {changed}>" if changed else ">")

    # Declared after the methods: a class-body name ``property`` above them would shadow the
    # builtin their decorators use.
    property: str = ""


def _defaults(cls: type[Any]) -> dict[str, Any]:
    fields: dict[str, FieldInfo] = cls.__pydantic_fields__
    return {
        name: info.get_default(call_default_factory=True)
        for name, info in fields.items()
        if not info.is_required()
    }


def _changed_fields(value: Any) -> dict[str, Any]:
    defaults = _defaults(type(value))
    dumped = _adapter(type(value)).dump_python(value, mode="json")
    changed = {
        name: dumped[name]
        for name in dumped
        if name not in defaults or getattr(value, name) != defaults[name]
    }
    for name, item in changed.items():
        if item is None:
            raise ValueError(f"{name} = None cannot be written in TOML (it has no null)")
    return changed


def _step_table(step: _AnyStep) -> dict[str, Any]:
    table = step_to_json(step)
    if isinstance(step, McpFault):
        return {key: item for key, item in table.items() if item is not None}
    defaults = _defaults(type(step))
    return {
        key: item
        for key, item in table.items()
        if key in ("step", "target") or (key not in defaults or getattr(step, key) != defaults[key])
    }


def _step_words(step: _AnyStep) -> str:
    if isinstance(step, McpFault):
        return f"fault {step.fault.action.kind}"
    if isinstance(step, AuthorizationControl):
        return f"as {step.action}"
    if isinstance(step, Call):
        return f"call {step.tool}" + ("" if step.expect == "result" else f" ({step.expect})")
    if isinstance(step, Advance):
        return f"advance {step.seconds:g}s"
    if isinstance(step, Stream):
        return f"stream {step.count}"
    if isinstance(step, Burst):
        return f"burst {step.n}"
    return str(step.kind)
