"""report: every evaluated variant from reports/<variant>.json, ranked on val -> metrics/summary.md; each variant's
misclassified test videos -> plots/errors/<variant>.png. The reference study's numbers (reference.yaml) stand
beside ours only where this run follows the study's protocol."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from clipvideo.cli.stage import Declaration, StageContext, stage_main
from clipvideo.core.paths import ProjectPaths


def declares(args: argparse.Namespace, paths: ProjectPaths) -> Declaration:
    """evaluate (the paired intervals) and the params.yaml keys of the study's protocol (reference.yaml)."""
    from clipvideo.evaluation.reference import load_reference

    return Declaration(("evaluate", *load_reference(paths.reference).protocol), "report")


def run(context: StageContext) -> str:
    from clipvideo.config.variants import variants
    from clipvideo.evaluation.report import write_report

    return write_report(context.paths, variants(context.paths.variants), context.params)


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("report", __doc__, declares, run, argv)


if __name__ == "__main__":
    sys.exit(main())
