from __future__ import annotations

import pytest


def write_ini(pytester: pytest.Pytester, *, mode: str = "auto", extra: str = "") -> None:
    """A downstream project's pytest.ini: pytest-asyncio in ``mode``, warnings are errors."""
    pytester.makeini(
        "[pytest]\n"
        f"asyncio_mode = {mode}\n"
        "asyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n"
        f"{extra}\n"
    )
