"""split: each series of downloaded videos on one side (train, val or test) by a keyed hash -> data/split.csv."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from clipvideo.cli.stage import StageContext, stage_main

DECLARES = ("split",)


def run(context: StageContext) -> str:
    from clipvideo.modeling.split import split_videos

    return split_videos(context.paths, context.params.split)


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("split", __doc__, DECLARES, run, argv)


if __name__ == "__main__":
    sys.exit(main())
