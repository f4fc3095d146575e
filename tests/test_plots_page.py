"""`dvc plots show` on a reproduced repo: the error images are plots, and the page renders offline in chromium."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.conftest import VARIANTS
from tools.plotpage import TEMPLATE

from .conftest import REPO, run_command

# Headless chromium with every way off this machine closed: names resolve to nothing, any http(s) goes to a
# closed local port, and none of its background services (updates, sync, QUIC) starts.
OFFLINE_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
    "--virtual-time-budget=10000",
    "--window-size=1400,1000",
]


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
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"chromium failed on {page}:\n{result.stderr[-3000:]}"
    return result.stdout[result.stdout.rfind("<body>") :]  # the page's body, not markup quoted inside the scripts


def drawn_charts(dom: str) -> int:
    """Charts vega drew: each `.vega-embed` container holds the SVG vega renders its marks into (the project's
    page asks for SVG; DVC's own page would draw on a canvas, if it could load vega)."""
    containers = len(re.findall(r'<div id="[^"]+" class="vega-embed\b', dom))
    drawings = re.findall(r'<(?:svg|canvas)\b[^>]*\bclass="marks"[^>]*>', dom)
    assert containers == len(drawings), f"{containers} vega-embed containers but {len(drawings)} drawings"
    sizes = [re.search(r'width="(\d+)" height="(\d+)"', tag) for tag in drawings]
    assert all(size and int(size[1]) > 0 and int(size[2]) > 0 for size in sizes)
    return len(drawings)


def chart_texts(dom: str) -> list[list[str]]:
    """The text of each drawn chart (title, axis titles and labels, legends), in page order."""
    parts = re.split(r'<div id="[^"]+" class="vega-embed\b', dom)[1:]
    return [[html.unescape(t) for t in re.findall(r"<text\b[^>]*>([^<]*)</text>", part)] for part in parts]


def plot_definitions(repo: Path) -> dict[str, dict]:
    """dvc.yaml's top-level plots with properties: id -> title, axis labels, files."""
    entries = yaml.safe_load((repo / "dvc.yaml").read_text())["plots"]
    return {name: props for entry in entries if isinstance(entry, dict) for name, props in entry.items()}


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
    run_command(["dvc", "plots", "show", "-o", "cdn_charts", *charts], dvc_repo)
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

    # every chart drawn with the title and axis labels dvc.yaml gives it; the curves name their variants
    definitions = plot_definitions(dvc_repo)
    titles = {definitions[chart]["title"]: chart for chart in charts}
    drawn = {titles[next(t for t in texts if t in titles)]: set(texts) for texts in chart_texts(dom)}
    assert sorted(drawn) == sorted(charts)
    for chart, texts in drawn.items():
        wanted = definitions[chart]
        assert {wanted["title"], wanted["x_label"], wanted["y_label"]} <= texts, f"{chart}: {sorted(texts)}"
    curves = {name for name, variant in VARIANTS.items() if variant.has_curve}
    assert set(VARIANTS) & drawn["train_loss"] == curves  # its legend: logreg and zeroshot have no curve

    run_command(["dvc", "plots", "show", "-o", "offline_charts", *charts], dvc_repo)
    drawn = tmp_path / "drawn.png"
    open_offline(dvc_repo / "offline_charts" / "index.html", tmp_path / "p4", f"--screenshot={drawn}")
    assert coloured_pixels(drawn) > 500  # the first charts' marks, where the CDN page above has none
