"""Load scenarios from TOML files (one scenario per file) and find the catalogue."""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from freshtoken._errors import ConfigError
from freshtoken.scenarios._model import (
    Advance,
    AuthorizationControl,
    Burst,
    Call,
    Disconnect,
    Initialize,
    Invariants,
    Join,
    McpFault,
    OpenGetStream,
    Restart,
    Resume,
    Scenario,
    Setup,
    Step,
    Stream,
    Wait,
)

__all__ = ["builtin_catalogue_dir", "load_catalogue", "load_scenario", "parse_scenario"]

_STEP_TYPES: dict[str, type[Any]] = {
    cls.kind: cls
    for cls in (
        Initialize,
        Call,
        Stream,
        Burst,
        OpenGetStream,
        Resume,
        Disconnect,
        Advance,
        Wait,
        Join,
        Restart,
    )
}
_STEP_NAMES = sorted([*_STEP_TYPES, "fault"])
_TOP_LEVEL = {"name", "title", "reproduces", "setup", "steps", "invariants"}


def builtin_catalogue_dir() -> Path:
    """The directory of the scenario catalogue shipped inside the package."""
    return Path(str(resources.files("freshtoken.scenarios").joinpath("catalogue")))


def load_scenario(path: str | Path) -> Scenario:
    """Read one scenario file; a malformed file raises :class:`ConfigError` naming file, field, reason."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read scenario file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    return parse_scenario(data, source=str(path), default_name=path.stem)


def load_catalogue(
    extra_dirs: Iterable[str | Path] = (), *, builtin: bool = True
) -> list[Scenario]:
    """The built-in catalogue (unless ``builtin`` is false) plus every ``*.toml`` in ``extra_dirs``.

    Names must be unique across all directories.
    """
    dirs = [builtin_catalogue_dir()] if builtin else []
    dirs.extend(Path(d) for d in extra_dirs)
    scenarios: list[Scenario] = []
    seen: dict[str, str] = {}
    for directory in dirs:
        if not directory.is_dir():
            raise ConfigError(f"{directory}: not a scenario directory")
        for path in sorted(directory.glob("*.toml")):
            scenario = load_scenario(path)
            if scenario.name in seen:
                raise ConfigError(
                    f"{path}: name: {scenario.name!r} is already defined in {seen[scenario.name]}"
                )
            seen[scenario.name] = str(path)
            scenarios.append(scenario)
    return scenarios


def parse_scenario(
    data: Mapping[str, Any], *, source: str = "<scenario>", default_name: str | None = None
) -> Scenario:
    """Build a :class:`Scenario` from already-parsed TOML/JSON data (same rules as files)."""
    where = _Where(source)
    unknown = sorted(set(data) - _TOP_LEVEL)
    if unknown:
        raise where.error(unknown[0], f"unknown key (expected one of {sorted(_TOP_LEVEL)})")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise where.error("name", "must be a non-empty string")
    title = _string(where, "title", data.get("title", ""))
    reproduces = _string(where, "reproduces", data.get("reproduces", ""))
    setup = _build(where, "setup", Setup, _table(where, "setup", data.get("setup", {})))
    invariants = _build(
        where, "invariants", Invariants, _table(where, "invariants", data.get("invariants", {}))
    )
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise where.error("steps", "must be a non-empty array of tables ([[steps]])")
    steps = tuple(_step(where, f"steps[{i}]", raw) for i, raw in enumerate(raw_steps))
    return Scenario(
        name=name,
        title=title,
        reproduces=reproduces,
        setup=setup,
        steps=steps,
        invariants=invariants,
        source=source,
    )


class _Where:
    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, field: str, reason: str) -> ConfigError:
        return ConfigError(f"{self.source}: {field}: {reason}")


def _string(where: _Where, field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise where.error(field, f"must be a string, got {type(value).__name__}")
    return value


def _table(where: _Where, field: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise where.error(field, f"must be a table, got {type(value).__name__}")
    return value


def _step(where: _Where, field: str, raw: Any) -> Step:
    table = dict(_table(where, field, raw))
    kind = table.pop("step", None)
    if kind is None:
        raise where.error(f"{field}.step", f"missing (one of {_STEP_NAMES})")
    if kind == "fault":
        return _fault_step(where, field, table)
    cls = _STEP_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise where.error(f"{field}.step", f"unknown step {kind!r} (one of {_STEP_NAMES})")
    step: Step = _build(where, field, cls, table)
    return step


def _fault_step(where: _Where, field: str, table: dict[str, Any]) -> Step:
    target = table.pop("target", "mcp")
    if target == "as":
        step: Step = _build(where, field, AuthorizationControl, table)
        return step
    if target != "mcp":
        raise where.error(f"{field}.target", f"must be 'mcp' or 'as', got {target!r}")
    from freshtoken.fakes import Fault

    try:
        fault = Fault.from_dict(table)
    except ConfigError as exc:
        raise where.error(field, str(exc)) from exc
    return McpFault(fault=fault.to_dict())


def _build(where: _Where, field: str, cls: type[Any], table: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            raise where.error(f"{field}.{key}", f"unknown key (expected one of {sorted(fields)})")
        kwargs[key] = _check(where, f"{field}.{key}", hints[key], value)
    missing = [
        f.name
        for f in fields.values()
        if f.name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise where.error(f"{field}.{missing[0]}", "missing")
    _check_ranges(where, field, kwargs)
    return cls(**kwargs)


def _check(where: _Where, field: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise where.error(field, f"must be one of {list(allowed)}, got {value!r}")
        return value
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        for option in options:
            try:
                return _check(where, field, option, value)
            except ConfigError:
                continue
        raise where.error(field, f"must be {_describe(hint)}, got {value!r}")
    if origin is not None and issubclass(origin, Mapping):
        if not isinstance(value, Mapping):
            raise where.error(field, f"must be a table, got {type(value).__name__}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise where.error(field, f"must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise where.error(field, f"must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise where.error(field, f"must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise where.error(field, f"must be a string, got {value!r}")
        return value
    raise where.error(field, f"unsupported value {value!r}")


def _describe(hint: Any) -> str:
    names = [getattr(a, "__name__", str(a)) for a in typing.get_args(hint) if a is not type(None)]
    return " or ".join(names)


_POSITIVE = {"n", "count", "times", "max_duration", "timeout"}
_NON_NEGATIVE = {
    "pace",
    "seconds",
    "advance",
    "delay",
    "access_ttl",
    "grace_period",
    "max_token_requests",
    "max_upstream_sends_per_call",
    "max_upstream_sends",
}


def _check_ranges(where: _Where, field: str, kwargs: Mapping[str, Any]) -> None:
    for key, value in kwargs.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if key in _POSITIVE and value <= 0:
            raise where.error(f"{field}.{key}", f"must be > 0, got {value!r}")
        if key in _NON_NEGATIVE and value < 0:
            raise where.error(f"{field}.{key}", f"must be >= 0, got {value!r}")
