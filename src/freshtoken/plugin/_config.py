"""Per-test settings of the fakes, read from ``@pytest.mark.freshtoken(...)``."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from freshtoken._errors import ConfigError
from freshtoken._setup import (
    AUTH_FAILURE_STYLES,
    PROTOCOL_VERSIONS,
    RESPONSE_MODES,
    STREAM_AUTH_MODES,
    Setup,
)

__all__ = [
    "AUTH_FAILURE_STYLES",
    "PROTOCOL_VERSIONS",
    "RESPONSE_MODES",
    "STREAM_AUTH_MODES",
    "FreshtokenConfig",
]

_MARKER = "@pytest.mark.freshtoken"


@dataclass(frozen=True)
class FreshtokenConfig(Setup):
    """How the fixtures build the fakes for one test: a :class:`freshtoken.scenarios.Setup`.

    The defaults describe a well-behaved deployment; ``@pytest.mark.freshtoken(...)`` overrides
    fields per test, module or class (the closest marker wins, field by field). Override the
    ``freshtoken_config`` fixture to change the defaults for a whole directory.
    """

    def replace(self, **changes: Any) -> FreshtokenConfig:
        """A copy with ``changes`` applied after validating each one like a marker argument."""
        for name, value in changes.items():
            _validate(name, value)
        return dataclasses.replace(self, **changes)

    def apply_markers(
        self, markers: Iterable[tuple[tuple[Any, ...], Mapping[str, Any]]]
    ) -> FreshtokenConfig:
        """Apply marker ``(args, kwargs)`` pairs given closest first (as ``iter_markers`` yields)."""
        config = self
        for args, kwargs in reversed(list(markers)):
            if args:
                raise ConfigError(
                    f"{_MARKER} takes keyword arguments only (got positional {args!r}); "
                    f"allowed arguments: {', '.join(sorted(_VALIDATORS))}"
                )
            config = config.replace(**kwargs)
        return config


def _choice(allowed: tuple[str, ...]) -> tuple[Callable[[Any], bool], str]:
    return (lambda value: value in allowed, "one of " + ", ".join(repr(a) for a in allowed))


def _seconds(*, positive: bool) -> tuple[Callable[[Any], bool], str]:
    def check(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return math.isfinite(value) and (value > 0 if positive else value >= 0)

    return check, "a number of seconds " + ("> 0" if positive else ">= 0")


_BOOL: tuple[Callable[[Any], bool], str] = (
    lambda value: isinstance(value, bool),
    "True or False",
)

_VALIDATORS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "protocol_version": _choice(PROTOCOL_VERSIONS),
    "access_ttl": _seconds(positive=True),
    "report_expires_in": _BOOL,
    "rotate_refresh_tokens": _BOOL,
    "reuse_detection": _BOOL,
    "grace_period": _seconds(positive=False),
    "response_mode": _choice(RESPONSE_MODES),
    "tls": _BOOL,
    "auth_failure_style": _choice(AUTH_FAILURE_STYLES),
    "stream_auth": _choice(STREAM_AUTH_MODES),
}


def _validate(name: str, value: Any) -> None:
    if name not in _VALIDATORS:
        raise ConfigError(
            f"{_MARKER}: unknown argument {name!r}; "
            f"allowed arguments: {', '.join(sorted(_VALIDATORS))}"
        )
    check, allowed = _VALIDATORS[name]
    if not check(value):
        raise ConfigError(f"{_MARKER}: {name}={value!r} is not allowed; expected {allowed}")
