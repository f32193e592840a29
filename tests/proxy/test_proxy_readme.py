"""The README's proxy example runs as written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _proxy_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## The proxy\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def test_readme_library_example_runs(pytester: pytest.Pytester) -> None:
    [code] = re.findall(r"```python\n(.*?)```", _proxy_section(), flags=re.DOTALL)
    script = pytester.path / "example.py"
    script.write_text(code, encoding="utf-8")
    result = pytester.run(sys.executable, str(script), timeout=60)
    assert result.ret == 0, result.stderr.str()
    assert result.outlines == ["still here"] * 3


def test_readme_config_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from freshtoken.proxy import load_config

    [toml] = re.findall(r"```toml\n(.*?)```", _proxy_section(), flags=re.DOTALL)
    monkeypatch.setenv("GITHUB_MCP_CLIENT_SECRET", "x")
    monkeypatch.setenv("GITHUB_MCP_REFRESH_TOKEN", "y")
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "proxy.toml"
    path.write_text(toml, encoding="utf-8")
    config = load_config(path)
    assert [t.name for t in config.targets] == ["github", "internal"]
    assert config.port == 8765
