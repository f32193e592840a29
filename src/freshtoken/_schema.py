"""One schema layer for every configuration surface: proxy TOML, scenario files, fault plans, the
pytest marker and token policies.

Each surface declares its shape once, as a pydantic model or dataclass built on :data:`MODEL_CONFIG`
(unknown keys refused, finite numbers only), and reads its input through :func:`parse`, so every
invalid value anywhere gives the same one-line :class:`~freshtoken.ConfigError`::

    <source>: <field path>: <reason>

pydantic v2 does the checking: its error locations are structured (the field path comes for free,
list indices and union tags included), its constraints cover what the surfaces need (ranges,
literals, strictness per field, tagged unions) and it is already in every MCP SDK install.
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

from pydantic import (
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationError,
)

from freshtoken._errors import ConfigError

__all__ = [
    "MODEL_CONFIG",
    "Count",
    "Flag",
    "PositiveCount",
    "PositiveSeconds",
    "Seconds",
    "format_location",
    "load_toml",
    "parse",
]

T = TypeVar("T")

MODEL_CONFIG: Final = ConfigDict(
    extra="forbid",
    allow_inf_nan=False,
    frozen=True,
    validate_default=True,
    populate_by_name=True,
)
"""The configuration every schema model and dataclass uses."""

# Strict: a number of seconds is an int or a float, never "5" or True.
Seconds = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
"""A duration: finite, zero or more."""
PositiveSeconds = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
"""A duration that must be more than zero (a TTL, a timeout)."""
Count = Annotated[StrictInt, Field(ge=0)]
"""A whole number of things, zero or more (``1.5`` and ``True`` are refused)."""
PositiveCount = Annotated[StrictInt, Field(ge=1)]
"""A whole number of things, at least one."""
Flag = StrictBool
"""A boolean; ``"yes"`` and ``1`` are refused."""

_REASONS: Final = {
    "extra_forbidden": "unknown key",
    "unexpected_keyword_argument": "unknown key",
    "missing_argument": "required",
    "missing": "required",
}


@functools.cache
def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


def parse(tp: type[T] | Any, data: object, *, source: str, prefix: str = "") -> T:
    """Validate ``data`` as ``tp`` (a model, a pydantic dataclass or any type pydantic knows).

    ``source`` names the input (a file path, ``marker freshtoken``, ``fault plan``); ``prefix`` is
    the path of ``data`` inside it (``setup``, ``faults[2]``). Raises :class:`ConfigError` with the
    first problem as ``<source>: <path>: <reason>`` and how many more there are.
    """
    try:
        return _adapter(tp).validate_python(data)  # type: ignore[arg-type,no-any-return]
    except ValidationError as exc:
        raise config_error(exc, source=source, prefix=prefix) from None


def config_error(exc: ValidationError, *, source: str, prefix: str = "") -> ConfigError:
    """The one-line :class:`ConfigError` for a pydantic validation error."""
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    path = format_location(first["loc"], prefix=prefix)
    reason = _REASONS.get(first["type"], first["msg"])
    if first["type"] == "value_error":
        reason = reason.removeprefix("Value error, ")
    more = len(errors) - 1
    if more:
        reason += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError.at(source, path, reason)


def format_location(loc: tuple[int | str, ...], *, prefix: str = "") -> str:
    """``("faults", 0, "action")`` → ``faults[0].action``."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or "(top level)"


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; an unreadable or malformed file is a :class:`ConfigError` naming it."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError.at(str(path), "(file)", exc.strerror or str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError.at(str(path), "(file)", f"not valid TOML: {exc}") from None
