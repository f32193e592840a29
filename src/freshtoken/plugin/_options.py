"""Command-line options and ini settings of the plugin."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from freshtoken._extras import needs_harness

__all__ = ["TIMELINE_MODES", "PluginOptions", "add_options", "options_key", "read_options"]

TIMELINE_MODES = ("on-failure", "always", "never")
DEFAULT_SUBJECT = "proxy"


@dataclass(frozen=True)
class PluginOptions:
    """The plugin's settings for one pytest run, options taking precedence over ini values."""

    catalogue: bool
    catalogue_dirs: tuple[Path, ...]
    subject: str
    command: str
    timeline: str
    html: Path | None = None


options_key = pytest.StashKey[PluginOptions]()


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("freshtoken", "freshtoken token-rotation harness")
    group.addoption(
        "--freshtoken-catalogue",
        action="store_true",
        default=None,
        help="collect the freshtoken scenario catalogue as test items (select with -k)",
    )
    group.addoption(
        "--freshtoken-catalogue-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="also collect the scenario files in DIR (repeatable; implies --freshtoken-catalogue)",
    )
    group.addoption(
        "--freshtoken-subject",
        default=None,
        metavar="NAME",
        help=f"the subject catalogue scenarios run against (default: {DEFAULT_SUBJECT})",
    )
    group.addoption(
        "--freshtoken-command",
        default=None,
        metavar="CMD",
        help="the client command line for --freshtoken-subject command",
    )
    group.addoption(
        "--freshtoken-timeline",
        default=None,
        choices=TIMELINE_MODES,
        help="attach the merged freshtoken timeline to test reports (default: on-failure)",
    )
    group.addoption(
        "--freshtoken-html",
        default=None,
        metavar="PATH",
        help="write a self-contained HTML report with a sequence diagram of each test's timeline",
    )
    parser.addini(
        "freshtoken_html",
        default="",
        help="path of the freshtoken HTML report, relative to the ini file",
    )
    parser.addini(
        "freshtoken_catalogue",
        type="bool",
        default=False,
        help="collect the freshtoken scenario catalogue as test items",
    )
    parser.addini(
        "freshtoken_catalogue_dirs",
        type="paths",
        default=[],
        help="extra scenario directories to collect, relative to the ini file",
    )
    parser.addini(
        "freshtoken_subject",
        default=DEFAULT_SUBJECT,
        help="the subject catalogue scenarios run against",
    )
    parser.addini(
        "freshtoken_command",
        default="",
        help="the client command line for the command subject",
    )
    parser.addini(
        "freshtoken_timeline",
        default="on-failure",
        help="attach the freshtoken timeline to reports: on-failure, always or never",
    )


def read_options(config: pytest.Config, *, missing: Sequence[str] = ()) -> PluginOptions:
    """Resolve and validate the settings; a bad value raises :class:`pytest.UsageError`.

    ``missing`` names the harness extra's packages that are not installed: then asking for the
    catalogue, a subject or the HTML report is a usage error saying what to install.
    """
    timeline = config.getoption("freshtoken_timeline") or str(config.getini("freshtoken_timeline"))
    if timeline not in TIMELINE_MODES:
        raise pytest.UsageError(
            f"freshtoken_timeline = {timeline!r} is not allowed; "
            f"expected one of {', '.join(TIMELINE_MODES)}"
        )
    cli_dirs = [Path(d).resolve() for d in config.getoption("freshtoken_catalogue_dir")]
    ini_dirs = [Path(d) for d in config.getini("freshtoken_catalogue_dirs")]
    dirs = tuple(dict.fromkeys([*ini_dirs, *cli_dirs]))
    for directory in dirs:
        if not directory.is_dir():
            raise pytest.UsageError(
                f"--freshtoken-catalogue-dir {directory}: not a directory of scenario files"
            )
    catalogue_option = config.getoption("freshtoken_catalogue")
    catalogue = bool(
        catalogue_option if catalogue_option is not None else config.getini("freshtoken_catalogue")
    ) or bool(cli_dirs)
    subject = config.getoption("freshtoken_subject") or str(config.getini("freshtoken_subject"))
    command = config.getoption("freshtoken_command") or str(config.getini("freshtoken_command"))
    html = _html_path(config)
    if missing:
        asked = [
            name
            for name, given in (
                ("--freshtoken-catalogue", catalogue),
                ("--freshtoken-subject", subject != DEFAULT_SUBJECT),
                ("--freshtoken-html", html is not None),
            )
            if given
        ]
        if asked:
            raise pytest.UsageError(needs_harness(asked[0], list(missing)))
    if subject != DEFAULT_SUBJECT:
        _check_subject(subject, command)
    return PluginOptions(
        catalogue=catalogue,
        catalogue_dirs=dirs,
        subject=subject,
        command=command,
        timeline=timeline,
        html=html,
    )


def _html_path(config: pytest.Config) -> Path | None:
    option = config.getoption("freshtoken_html")
    if option:
        return Path(option).resolve()
    ini = str(config.getini("freshtoken_html"))
    if not ini:
        return None
    base = config.inipath.parent if config.inipath is not None else config.rootpath
    return (base / ini).resolve()


def _check_subject(subject: str, command: str) -> None:
    from freshtoken.scenarios import builtin_subjects

    names = [*builtin_subjects(), "command"]
    if subject not in names:
        raise pytest.UsageError(
            f"--freshtoken-subject {subject!r} is not a known subject; "
            f"expected one of {', '.join(names)}"
        )
    if subject == "command" and not command:
        raise pytest.UsageError(
            "--freshtoken-subject command needs the client's command line: --freshtoken-command CMD"
        )
