"""manifest: list every source video once, valid or invalid with a reason -> data/manifest.csv.

The source is `dataset.source`: the offline sample (rendered with ffmpeg into data/sample/), the Kaggle CSV
(`dataset.csv`, fetched with kagglehub when missing), any CSV of links (`csv`), or a folder with one subfolder
per category (`folder`). Rows are judged by their text; local videos are hashed (their id), never decoded.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from clipvideo.cli.stage import StageContext, stage_main

DECLARES = ("dataset", "sample")


def run(context: StageContext) -> str:
    from clipvideo.acquire.manifest import make_manifest

    params = context.params
    return make_manifest(context.paths, params.dataset, params.sample)


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("manifest", __doc__, DECLARES, run, argv)


if __name__ == "__main__":
    sys.exit(main())
