"""Load scenarios from TOML files (one scenario per file) and find the catalogue.

A file is checked by the one schema layer (:func:`freshtoken._schema.parse`) against the scenario
model, so a bad value anywhere reads ``<file>: <field path>: <reason>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field
from pydantic.dataclasses import dataclass

from freshtoken._errors import ConfigError
from freshtoken._schema import MODEL_CONFIG, load_toml, parse
from freshtoken.scenarios._applicability import Applicability
from freshtoken.scenarios._model import Invariants, Scenario, Setup, Steps

__all__ = ["builtin_catalogue_dir", "load_catalogue", "load_scenario", "parse_scenario"]


@dataclass(config=MODEL_CONFIG)
class _ScenarioFile:
    """What a scenario file may hold: every key of :class:`Scenario` but its ``source``."""

    name: Annotated[str, Field(min_length=1)]
    steps: Steps
    title: str = ""
    reproduces: str = ""
    property: str = ""
    setup: Setup = Field(default_factory=Setup)
    invariants: Invariants = Field(default_factory=Invariants)
    applicability: Applicability = Field(default_factory=Applicability)


def builtin_catalogue_dir() -> Path:
    """The directory of the scenario catalogue shipped inside the package."""
    return Path(str(resources.files("freshtoken.scenarios").joinpath("catalogue")))


def load_scenario(path: str | Path) -> Scenario:
    """Read one scenario file; a malformed file raises :class:`ConfigError` naming file, field, reason."""
    path = Path(path)
    try:
        data = load_toml(path)
    except UnicodeDecodeError as exc:
        raise ConfigError.at(str(path), "(file)", f"not UTF-8 text: {exc.reason}") from None
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
            raise ConfigError.at(str(directory), "(directory)", "not a scenario directory")
        for path in sorted(directory.glob("*.toml")):
            scenario = load_scenario(path)
            if scenario.name in seen:
                raise ConfigError.at(
                    str(path),
                    "name",
                    f"{scenario.name!r} is already defined in {seen[scenario.name]}",
                )
            seen[scenario.name] = str(path)
            scenarios.append(scenario)
    return scenarios


def parse_scenario(
    data: Mapping[str, Any], *, source: str = "<scenario>", default_name: str | None = None
) -> Scenario:
    """Build a :class:`Scenario` from already-parsed TOML/JSON data (same rules as files)."""
    if isinstance(data, Mapping) and "name" not in data and default_name is not None:
        data = {"name": default_name, **data}
    checked: _ScenarioFile = parse(_ScenarioFile, data, source=source)
    listed = checked.applicability.revisions
    if listed and checked.setup.protocol_version not in listed:
        raise ConfigError.at(
            source,
            "applicability.revisions",
            f"must include the setup's protocol_version {checked.setup.protocol_version!r}",
        )
    return Scenario(
        name=checked.name,
        title=checked.title,
        reproduces=checked.reproduces,
        property=checked.property,
        setup=checked.setup,
        steps=checked.steps,
        invariants=checked.invariants,
        applicability=checked.applicability,
        source=source,
    )
