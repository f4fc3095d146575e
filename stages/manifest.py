"""manifest: list every source video once, valid or invalid with a reason -> data/manifest.csv."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from clipvideo.cli import stage_main
from clipvideo.contracts import MANIFEST_COLUMNS
from clipvideo.errors import PipelineError
from clipvideo.files import write_table
from clipvideo.manifest import count_by, sample_rows
from clipvideo.paths import ProjectPaths
from clipvideo.sample import generate_sample

SECTIONS = ("seed", "dataset", "sample")


def build_sample_manifest(paths: ProjectPaths, params: dict[str, Any]) -> list[dict[str, str]]:
    """Render the synthetic sample under data/sample/ and list it."""
    if paths.sample_videos.exists():
        shutil.rmtree(paths.sample_videos)
    sample = params["sample"]
    videos = generate_sample(
        paths.sample_videos,
        params["dataset"]["categories"],
        sample["videos_per_category"],
        sample["min_duration_s"],
        sample["max_duration_s"],
        params["seed"],
    )
    return sample_rows(((v.category, v.path.relative_to(paths.root), v.title) for v in videos), paths.root)


def run(paths: ProjectPaths, params: dict[str, Any], _: argparse.Namespace) -> str:
    source = params["dataset"]["source"]
    if source != "sample":
        raise PipelineError("dataset.source='youtube' is not implemented yet")
    rows = build_sample_manifest(paths, params)
    write_table(paths.manifest, MANIFEST_COLUMNS, rows)
    counts = count_by(rows, "category", "status")
    lines = [f"  {category:<12} {status:<8} {n}" for (category, status), n in sorted(counts.items())]
    print("\n".join(lines))
    return f"{len(rows)} rows -> {paths.manifest}"


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("manifest", __doc__, SECTIONS, run, argv)


if __name__ == "__main__":
    sys.exit(main())
