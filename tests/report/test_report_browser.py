"""A real browser renders the report: headless Chromium takes a screenshot and dumps its DOM.

Locally the test skips when Chromium is missing; under CI (``CI`` set) it fails instead, since
``.ci/run`` installs Debian's ``chromium``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from report_helpers import parse, run, sections

from freshtoken.scenarios import ScenarioResult, write_html
from freshtoken.scenarios._svg import STALE_COLOUR

SEED = "seed-stale-bearer-after-rotation"
WINDOW = (1400, 1800)


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path is not None:
            return path
    if os.environ.get("CI"):
        pytest.fail("Chromium is missing; .ci/run installs it with `apt-get install chromium`")
    pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")


@pytest.fixture(scope="module")
def seed_runs() -> tuple[ScenarioResult, ScenarioResult]:
    return run(SEED, "baked-bearer"), run(SEED, "proxy")


def _browse(binary: str, profile: Path, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Offline and quiet: no sync, no component updates, no background fetches, a fresh profile.
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--force-color-profile=srgb",
        "--hide-scrollbars",
        *args,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _screenshot(binary: str, tmp_path: Path, page: Path) -> Image.Image:
    png = tmp_path / f"{page.stem}.png"
    done = _browse(
        binary,
        tmp_path / "profile",
        page,
        f"--screenshot={png}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    )
    assert png.exists(), done.stderr[-2000:]
    return Image.open(png).convert("RGB")


def _near(colour: tuple[int, int, int], target: str, tolerance: int = 16) -> bool:
    wanted = tuple(int(target[i : i + 2], 16) for i in (1, 3, 5))
    return all(abs(a - b) <= tolerance for a, b in zip(colour, wanted, strict=True))


def _count(image: Image.Image, target: str) -> int:
    colours = image.getcolors(maxcolors=image.width * image.height) or []
    return sum(n for n, colour in colours if _near(colour, target))


def test_chromium_draws_the_failing_diagram_and_keeps_passing_ones_closed(
    chromium: str, seed_runs: tuple[ScenarioResult, ScenarioResult], tmp_path: Path
) -> None:
    failing, passing = seed_runs
    both = write_html([failing, passing], tmp_path / "both.html")
    only_passing = write_html([passing], tmp_path / "passing.html")

    image = _screenshot(chromium, tmp_path, both)
    assert image.size == WINDOW
    colours = image.getcolors(maxcolors=image.width * image.height) or []
    white = sum(n for n, colour in colours if min(colour) >= 250)
    assert len(colours) > 100, "the page looks blank"
    assert white < 0.97 * image.width * image.height, "the page looks blank"
    # The stale bearer's red is used only inside diagrams: the failing run's diagram is drawn.
    assert _count(image, STALE_COLOUR) > 300

    # A passing run's diagram (which has a stale send too, before the refresh) stays folded.
    control = _screenshot(chromium, tmp_path, only_passing)
    assert _count(control, STALE_COLOUR) == 0


def test_chromium_keeps_every_diagram_in_the_laid_out_dom(
    chromium: str, seed_runs: tuple[ScenarioResult, ScenarioResult], tmp_path: Path
) -> None:
    page = write_html(list(seed_runs), tmp_path / "report.html")
    done = _browse(chromium, tmp_path / "profile", page, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    source = parse(page.read_text(encoding="utf-8"))
    rendered = parse(done.stdout)
    for ours, theirs in zip(sections(source), sections(rendered), strict=True):
        [svg] = theirs.find("svg", cls="diagram")
        assert len(svg.find("g", cls="row")) == len(ours.find("g", cls="row"))
        assert len(svg.find("g", cls="row")) > 10
    failing = sections(rendered)[0]
    assert "open" in failing.find("details")[0].attrs
    assert failing.find("g", cls="pinned")
