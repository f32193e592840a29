"""The official MCP SDK clients as subjects: ``python-sdk`` and ``typescript-sdk``.

Each is a command subject (:class:`~freshtoken.scenarios.CommandSubject`) running an adapter
shipped with the package (``subjects/`` beside this module) that maps the command protocol's
steps onto the SDK's public client API, with the SDK's own OAuth client provider seeded with the
scenario's grant. They are the protocol's reference examples.

The Python subject runs the ``mcp`` package installed beside freshtoken (the ``sdk`` extra pins a
tested range). The TypeScript subject runs with Node (18 or newer) and the pinned
``@modelcontextprotocol/sdk``, which ``npm`` installs into a cache directory on first use (or
found in a directory given by the user).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Final

from freshtoken._errors import ConfigError
from freshtoken.scenarios._command import ClockMode, CommandSubject

__all__ = [
    "PYTHON_SDK",
    "SDK_SUBJECTS",
    "TYPESCRIPT_SDK",
    "TYPESCRIPT_SDK_PACKAGE",
    "TYPESCRIPT_SDK_VERSION",
    "SdkSubject",
    "default_sdk_dir",
    "sdk_subject",
]

PYTHON_SDK: Final = "python-sdk"
TYPESCRIPT_SDK: Final = "typescript-sdk"
SDK_SUBJECTS: Final = (PYTHON_SDK, TYPESCRIPT_SDK)
"""The names of the SDK subjects."""
TYPESCRIPT_SDK_PACKAGE: Final = "@modelcontextprotocol/sdk"
TYPESCRIPT_SDK_VERSION: Final = "1.32.2"
"""The TypeScript SDK version the subject installs and was checked against."""
MIN_NODE: Final = 18
# The adapters speak the handshake revisions through the SDKs' session APIs; the TypeScript SDK
# does not speak 2026-07-28 at all.
SDK_REVISIONS: Final = ("2025-06-18", "2025-11-25")
_INSTALL_TIMEOUT: Final = 300.0
"""Real seconds ``npm install`` may take (a cold npm cache over a slow network)."""

_DESCRIPTIONS: Final = {
    PYTHON_SDK: "the official MCP Python SDK client (mcp) with its own OAuthClientProvider",
    TYPESCRIPT_SDK: (
        "the official MCP TypeScript SDK client (@modelcontextprotocol/sdk) with an "
        "OAuthClientProvider, run with Node"
    ),
}


@dataclass
class SdkSubject(CommandSubject):
    """An official SDK's client run as a command subject; ``sdk`` and ``sdk_version`` name what
    it runs (the adapter also records them on the timeline as a ``client`` ``sdk`` event)."""

    sdk: str = ""
    sdk_version: str = ""

    @property
    def label(self) -> str:
        """The subject as a scoreboard column names it: ``python-sdk`` or ``python-sdk via
        proxy``."""
        return f"{self.name} via proxy" if self.via_proxy else self.name


def _adapter(*parts: str) -> Path:
    # Package data: installed as plain files beside this module (a wheel is unpacked).
    return Path(str(resources.files("freshtoken.scenarios").joinpath("subjects", *parts)))


def default_sdk_dir() -> Path:
    """Where the TypeScript SDK is installed on first use:
    ``$XDG_CACHE_HOME/freshtoken/typescript-sdk-<version>`` (``~/.cache`` without it)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "freshtoken" / f"typescript-sdk-{TYPESCRIPT_SDK_VERSION}"


def sdk_subject(
    name: str,
    *,
    via_proxy: bool = False,
    sdk_dir: str | Path | None = None,
    clock: ClockMode = "auto",
    notice: Callable[[str], None] | None = None,
    echo: Callable[[str], None] | None = None,
) -> SdkSubject:
    """The SDK subject called ``name`` (``python-sdk`` or ``typescript-sdk``), ready to run.

    ``via_proxy`` gives the client freshtoken's proxy's URL and no credentials. ``sdk_dir`` is
    where the TypeScript SDK is (or is to be) installed (default :func:`default_sdk_dir`);
    ``notice`` hears about a first-use install. ``clock``: ``"auto"`` runs a direct client under
    libfaketime when it is installed, so it sees the scenario's clock (see
    :class:`CommandSubject`). Raises :class:`ConfigError` when the SDK cannot be run (``mcp``
    not installed; ``node`` missing or too old; ``npm`` missing when an install is needed).
    """
    if name == PYTHON_SDK:
        try:
            version = metadata.version("mcp")
        except metadata.PackageNotFoundError:
            raise ConfigError(
                f"--subject {PYTHON_SDK}: the mcp package is not installed "
                "(pip install 'freshtoken[sdk]')"
            ) from None
        argv = [sys.executable, str(_adapter("python_sdk.py"))]
        sdk = "mcp"
    elif name == TYPESCRIPT_SDK:
        node = _node()
        where = Path(sdk_dir) if sdk_dir is not None else default_sdk_dir()
        version = _typescript_sdk(where, install=sdk_dir is None, notice=notice)
        argv = [node, str(_adapter("typescript_sdk", "client.mjs")), str(_sdk_root(where))]
        sdk = TYPESCRIPT_SDK_PACKAGE
    else:
        raise ConfigError(f"--subject: unknown SDK subject {name!r} (one of {SDK_SUBJECTS})")
    subject = SdkSubject(
        argv,
        via_proxy=via_proxy,
        revisions=SDK_REVISIONS,
        clock=clock,
        echo=echo,
        name=name,
        description=_DESCRIPTIONS[name],
        sdk=sdk,
        sdk_version=version,
    )
    subject.check()
    return subject


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise ConfigError(
            f"--subject {TYPESCRIPT_SDK}: node is not installed (Node.js {MIN_NODE} or newer "
            "is needed)"
        )
    try:
        out = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(f"--subject {TYPESCRIPT_SDK}: cannot run {node}: {exc}") from None
    found = re.match(r"v(\d+)\.", out.strip())
    if found is None or int(found.group(1)) < MIN_NODE:
        raise ConfigError(
            f"--subject {TYPESCRIPT_SDK}: node {out.strip() or '(unknown)'} is too old "
            f"(Node.js {MIN_NODE} or newer is needed)"
        )
    return node


def _sdk_root(where: Path) -> Path:
    return where / "node_modules" / "@modelcontextprotocol" / "sdk"


def _installed_version(where: Path) -> str | None:
    try:
        package = json.loads((_sdk_root(where) / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    version = package.get("version") if isinstance(package, dict) else None
    return version if isinstance(version, str) else None


def _typescript_sdk(where: Path, *, install: bool, notice: Callable[[str], None] | None) -> str:
    """The TypeScript SDK version installed in ``where``, installing the pinned one first when
    ``install`` is set and it is not there yet."""
    found = _installed_version(where)
    if found == TYPESCRIPT_SDK_VERSION or (found is not None and not install):
        return found
    if not install:
        raise ConfigError(
            f"--sdk-dir: {where}: {TYPESCRIPT_SDK_PACKAGE} is not installed there "
            f"(npm install --prefix {where} {TYPESCRIPT_SDK_PACKAGE}@{TYPESCRIPT_SDK_VERSION})"
        )
    npm = shutil.which("npm")
    if npm is None:
        raise ConfigError(
            f"--subject {TYPESCRIPT_SDK}: npm is not installed; it is needed once, to install "
            f"{TYPESCRIPT_SDK_PACKAGE}@{TYPESCRIPT_SDK_VERSION} into {where}"
        )
    where.parent.mkdir(parents=True, exist_ok=True)
    import fcntl  # POSIX only, as the command subject's process groups are

    # Several runs may start at once (pytest-xdist, two terminals): one installs, the others wait.
    with open(where.parent / f".{where.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version(where) == TYPESCRIPT_SDK_VERSION:
            return TYPESCRIPT_SDK_VERSION
        if notice is not None:
            notice(
                f"installing {TYPESCRIPT_SDK_PACKAGE}@{TYPESCRIPT_SDK_VERSION} into {where} "
                "(first use)"
            )
        _npm_install(npm, where)
    return TYPESCRIPT_SDK_VERSION


def _npm_install(npm: str, where: Path) -> None:
    # Into a fresh directory beside the target, moved into place once complete: an interrupted
    # install never leaves a half-filled SDK behind.
    staging = Path(tempfile.mkdtemp(prefix=f".{where.name}-", dir=where.parent))
    try:
        shutil.copy(_adapter("typescript_sdk", "package.json"), staging / "package.json")
        try:
            done = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--omit=dev", "--loglevel=error"],
                cwd=staging,
                capture_output=True,
                text=True,
                timeout=_INSTALL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(
                f"--subject {TYPESCRIPT_SDK}: npm install did not finish within "
                f"{_INSTALL_TIMEOUT:g} s"
            ) from None
        if done.returncode != 0 or _installed_version(staging) != TYPESCRIPT_SDK_VERSION:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ConfigError(
                f"--subject {TYPESCRIPT_SDK}: npm install of {TYPESCRIPT_SDK_PACKAGE}@"
                f"{TYPESCRIPT_SDK_VERSION} failed (status {done.returncode}): {tail[0]}"
            )
        if where.exists():
            shutil.rmtree(where)
        staging.rename(where)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
