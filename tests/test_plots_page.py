"""`dvc plots show` on a reproduced repo: the error images are plots, and the page renders offline in chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import VARIANTS
from tools.plotpage import TEMPLATE

from .conftest import REPO, run_command

# Headless chromium with every way off this machine closed: names resolve to nothing, any http(s) goes to a
# closed local port, and none of its background services (updates, sync, QUIC) starts.
OFFLINE_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
    "--virtual-time-budget=10000", "--window-size=1400,1000",
]  # fmt: skip


CHART_FOLDERS = ["plots/confusion", "plots/train"]  # the vega plots only: the error images are colourful too


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: CI must check the plots page in a browser (.ci/run installs it)")
        pytest.skip("chromium is not installed (`apt-get install chromium`; CI installs it and runs this test)")
    return path


def open_offline(page: Path, profile: Path, *action: str) -> str:
    """Load `page` in headless chromium with no network and run `action` (--dump-dom: returns the DOM's body)."""
    result = subprocess.run(
        [chromium(), *OFFLINE_FLAGS, f"--user-data-dir={profile}", *action, page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, f"chromium failed on {page}:\n{result.stderr[-3000:]}"
    return result.stdout[result.stdout.rfind("<body>") :]  # the page's body, not markup quoted inside the scripts


def drawn_charts(dom: str) -> int:
    """Charts vega drew: each `.vega-embed` container holds the canvas vega renders its marks into."""
    containers = len(re.findall(r'<div id="[^"]+" class="vega-embed\b', dom))
    canvases = re.findall(r'<canvas width="(\d+)" height="(\d+)" class="marks"', dom)
    assert containers == len(canvases), f"{containers} vega-embed containers but {len(canvases)} canvases"
    assert all(int(w) > 0 and int(h) > 0 for w, h in canvases)
    return len(canvases)


def coloured_pixels(screenshot: Path) -> int:
    """Pixels with a clear hue (chart marks); text, borders and background are black, grey or white."""
    image = Image.open(screenshot).convert("HSV")
    return sum(1 for _, saturation, value in image.getdata() if saturation > 80 and value > 60)


@pytest.mark.slow
def test_error_images_are_plots_and_the_page_renders_offline(dvc_repo: Path, tmp_path: Path) -> None:
    shown = json.loads(run_command(["dvc", "plots", "show", "--json"], dvc_repo))["data"]
    images = [e["url"] for entries in shown.values() for e in entries if e["type"] == "image"]
    charts = [plot for plot, entries in shown.items() if any(e["type"] == "vega" for e in entries)]
    assert sorted(Path(url).name for url in images) == sorted(f"workspace_plots_errors_{v}.png" for v in VARIANTS)
    for url in images:
        assert Image.open(url).size[0] > 0  # each one a PNG the report stage drew

    # DVC's own template loads vega from a CDN: with the network closed it draws nothing (so these checks can fail)
    run_command(["dvc", "plots", "show", "-o", "cdn_charts", *CHART_FOLDERS], dvc_repo)
    cdn_page, blank = dvc_repo / "cdn_charts" / "index.html", tmp_path / "blank.png"
    assert drawn_charts(open_offline(cdn_page, tmp_path / "p1", "--dump-dom")) == 0
    open_offline(cdn_page, tmp_path / "p2", f"--screenshot={blank}")
    assert coloured_pixels(blank) == 0

    # the project's config and template, as committed: every chart drawn, every error image on the page
    shutil.copy(REPO / ".dvc" / "config", dvc_repo / ".dvc" / "config")
    shutil.copy(TEMPLATE, dvc_repo / ".dvc" / TEMPLATE.name)
    run_command(["dvc", "plots", "show"], dvc_repo)
    page = dvc_repo / "dvc_plots" / "index.html"
    dom = open_offline(page, tmp_path / "p3", "--dump-dom")
    assert drawn_charts(dom) == len(charts) > 0
    sources = re.findall(r'<img src="([^"]+)"', dom)
    assert sorted(Path(s).name for s in sources) == sorted(Path(url).name for url in images)
    assert all((page.parent / s).is_file() for s in sources)

    run_command(["dvc", "plots", "show", "-o", "offline_charts", *CHART_FOLDERS], dvc_repo)
    drawn = tmp_path / "drawn.png"
    open_offline(dvc_repo / "offline_charts" / "index.html", tmp_path / "p4", f"--screenshot={drawn}")
    assert coloured_pixels(drawn) > 500  # the first charts' marks, where the CDN page above has none
