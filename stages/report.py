"""report: every evaluated variant from reports/<variant>.json, best first -> metrics/summary.md; each variant's
misclassified test videos -> plots/errors/<variant>.png."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from clipvideo.cli.stage import StageContext, stage_main

DECLARES = ("seed", "evaluate")


def run(context: StageContext) -> str:
    from clipvideo.config.variants import variants
    from clipvideo.evaluation.report import write_report

    paths, params = context.paths, context.params
    return write_report(paths, variants(paths.variants), params.evaluate, params.seed)


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("report", __doc__, DECLARES, run, argv)


if __name__ == "__main__":
    sys.exit(main())
