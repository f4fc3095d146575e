"""check_leakage: count the test videos nearly identical to a training video -> metrics/leakage.json.

A video is the normalised mean of its frame embeddings; a test video counts when its cosine to some training
video is at or above `check_leakage.cosine`. The pairs go to reports/leakage.json.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from clipvideo.cli.stage import StageContext, stage_main

DECLARES = ("check_leakage",)


def run(context: StageContext) -> str:
    from clipvideo.evaluation.leakage import check_leakage

    return check_leakage(context.paths, context.params.check_leakage)


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("check_leakage", __doc__, DECLARES, run, argv)


if __name__ == "__main__":
    sys.exit(main())
