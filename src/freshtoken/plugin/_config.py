"""Per-test settings of the fakes, read from ``@pytest.mark.freshtoken(...)``.

The marker's arguments are the fields of :class:`~freshtoken._setup.Setup`, checked by the same
schema as a scenario file's ``[setup]`` table, so both accept the same values and a bad one reads
``marker freshtoken: <argument>: <reason>``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, Final

from pydantic.dataclasses import dataclass

from freshtoken._errors import ConfigError
from freshtoken._schema import MODEL_CONFIG, Flag, parse
from freshtoken._setup import Setup

__all__ = ["MARKER_SOURCE", "FreshtokenConfig"]

MARKER_SOURCE: Final = "marker freshtoken"
"""How marker errors name their source."""


@dataclass(config=MODEL_CONFIG)
class FreshtokenConfig(Setup):
    """How the fixtures build the fakes for one test: a :class:`Setup` the marker can change.

    The defaults describe a well-behaved deployment. Override the ``freshtoken_config`` fixture
    to change them for a whole directory; ``@pytest.mark.freshtoken(...)`` changes fields per
    test, module or class, and beats the directory's settings (the closest marker wins, field
    by field).

    Beyond the :class:`Setup` fields, ``assert_all_faults_fired`` (default true) fails a test at
    teardown when a fault it added never fired, the way respx's ``assert_all_called`` does.
    """

    assert_all_faults_fired: Flag = True

    def replace(self, **changes: Any) -> FreshtokenConfig:
        """A copy with ``changes`` applied, each checked like a marker argument."""
        return _parse({**_values(self), **changes})

    def apply_markers(
        self, markers: Iterable[tuple[tuple[Any, ...], Mapping[str, Any]]]
    ) -> FreshtokenConfig:
        """Apply marker ``(args, kwargs)`` pairs given closest first (as ``iter_markers`` yields)."""
        values = _values(self)
        for args, kwargs in reversed(list(markers)):
            if args:
                raise ConfigError.at(
                    MARKER_SOURCE,
                    "(arguments)",
                    f"keyword arguments only, got positional {args!r} "
                    f"(allowed arguments: {', '.join(_ARGUMENTS)})",
                )
            values.update(kwargs)
        return _parse(values)


_ARGUMENTS: Final = tuple(sorted(field.name for field in dataclasses.fields(FreshtokenConfig)))


def _values(config: FreshtokenConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in _ARGUMENTS}


def _parse(values: Mapping[str, Any]) -> FreshtokenConfig:
    try:
        config: FreshtokenConfig = parse(FreshtokenConfig, dict(values), source=MARKER_SOURCE)
    except ConfigError as exc:
        if exc.reason is not None and exc.reason.startswith("unknown key"):
            # A decorator argument has no file to look at: list what is allowed.
            raise ConfigError.at(
                MARKER_SOURCE,
                exc.field or "(arguments)",
                f"unknown argument (allowed arguments: {', '.join(_ARGUMENTS)})",
            ) from None
        raise
    return config
