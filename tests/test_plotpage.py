"""The offline template for `dvc plots show`: what is committed, how DVC fills it, and what the generator refuses."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import pytest
from configobj import ConfigObj
from dvc_render.html import render_html
from dvc_render.vega import VegaRenderer

from clipvideo.core.errors import PipelineError
from tools import plotpage

from .conftest import REPO

HOOK_LIMIT_BYTES = 4_000_000  # the repository warns about committed files larger than this


def test_dvc_config_points_plots_show_at_the_committed_template() -> None:
    template = ConfigObj(str(REPO / ".dvc" / "config"))["plots"]["html_template"]
    assert (REPO / ".dvc" / template).resolve() == plotpage.TEMPLATE  # DVC reads it relative to .dvc/


def test_committed_template_inlines_the_pinned_packages_and_loads_nothing() -> None:
    page = plotpage.TEMPLATE.read_text(encoding="utf-8")
    assert len(page.encode("utf-8")) < HOOK_LIMIT_BYTES
    for package in plotpage.PACKAGES:  # regenerate with `python -m tools.plotpage` when PACKAGES changes
        assert package.label in page
        assert f"<script>/* {package.name} {package.version} */" in page
    assert page.count("{plot_divs}") == 1 and "{scripts}" not in page
    assert not re.search(r"<script[^>]*\ssrc=", page) and "sourceMappingURL" not in page
    assert "Redistribution and use in source and binary forms" in page  # BSD-3 asks for its text


def test_pinned_versions_are_the_ones_dvcs_own_page_loads() -> None:
    """When DVC moves to other vega versions, the specs it writes may need them: regenerate the template."""
    loaded = re.findall(r"cdn\.jsdelivr\.net/npm/([\w-]+)@([\d.]+)", VegaRenderer.SCRIPTS)
    assert loaded == [(p.name, p.version) for p in plotpage.PACKAGES]


def test_dvc_fills_the_template_without_cdn_scripts(tmp_path: Path) -> None:
    renderer = VegaRenderer([{"x": 1, "y": 2, "rev": "workspace"}], "plots/train/linear.csv", x="x", y="y")
    page = Path(render_html([renderer], tmp_path / "index.html", html_template=plotpage.TEMPLATE)).read_text()
    assert "cdn.jsdelivr.net" not in page
    assert "vegaEmbed('#plots_train_linear_csv', spec);" in page


def tarball(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_a_tarball_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    vega = plotpage.PACKAGES[0]
    tarball(tmp_path / vega.tarball, {vega.script: "var vega = {};", "LICENSE": "BSD"})
    with pytest.raises(PipelineError, match=rf"{re.escape(vega.tarball)}: SHA-512 .* is not npm's"):
        plotpage.build_template(tmp_path)


def test_a_missing_tarball_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"vega-5\.20\.2\.tgz: missing; `npm pack vega@5\.20\.2` writes it"):
        plotpage.build_template(tmp_path)


@pytest.mark.parametrize("code", ["a = '</script>';", "a = '<!--';", "a = '{plot_divs}';"])
def test_code_that_would_break_the_page_is_refused(code: str) -> None:
    with pytest.raises(PipelineError, match="cannot be inlined as is"):
        plotpage.inline_script(plotpage.PACKAGES[0], code)


def test_source_map_comment_is_dropped() -> None:
    script = plotpage.inline_script(plotpage.PACKAGES[0], "var vega = 1;\n//# sourceMappingURL=vega.min.js.map\n")
    assert "sourceMappingURL" not in script and "var vega = 1;" in script
