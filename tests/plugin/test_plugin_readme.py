"""The README's "Use it in your test suite" examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Use it in your test suite"


def section_blocks() -> list[tuple[str, str]]:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION) + len(SECTION)
    end = text.find("\n## ", start)
    body = text[start : end if end != -1 else None]
    return re.findall(r"```(\w+)\n(.*?)```", body, flags=re.DOTALL)


def test_the_section_has_runnable_examples() -> None:
    kinds = [kind for kind, _ in section_blocks()]
    assert kinds.count("python") >= 4
    assert "ini" in kinds


def test_readme_examples_run_as_written(pytester: pytest.Pytester) -> None:
    blocks = section_blocks()
    ini = next(code for kind, code in blocks if kind == "ini")
    pytester.makefile(".ini", pytest=ini + "filterwarnings = error\n")
    tests = 0
    for index, (kind, code) in enumerate(blocks):
        if kind == "python":
            pytester.makepyfile(**{f"test_readme_{index}": code})
            tests += len(re.findall(r"^(?:async )?def test_|^Test\w+ = ", code, flags=re.M))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=tests)
