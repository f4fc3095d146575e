"""split: stratified, seeded train/test split of the downloaded videos -> data/split.csv."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from clipvideo.cli.stage import StageContext, stage_main

DECLARES = ("seed", "split")


def run(context: StageContext) -> str:
    from clipvideo.modeling.split import split_videos

    return split_videos(context.paths, context.params.split, context.params.seed)


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("split", __doc__, DECLARES, run, argv)


if __name__ == "__main__":
    sys.exit(main())
