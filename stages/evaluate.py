"""evaluate: score one trained variant on the test videos, and on val (where choices are made) ->
metrics/<variant>.json, reports/<variant>.json, plots/confusion/<variant>.csv.

metrics/<variant>.json holds the few numbers DVC compares; the report holds everything else (intervals,
per-class figures, support, encoder, each test video's prediction).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from clipvideo.cli.stage import StageContext, stage_main
from clipvideo.core.system import reproducible_cpu

DECLARES = ("evaluate",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("variant", help="which trained classifier to score (linear, transformer-mixup, logreg, ...)")


def run(context: StageContext) -> str:
    from clipvideo.config.variants import variant_spec
    from clipvideo.evaluation.evaluate import evaluate_variant

    variant, params = context.args.variant, context.params
    spec = variant_spec(variant, context.paths.variants)  # an unknown name fails before any file is read
    return evaluate_variant(context.paths, variant, spec, params.evaluate)


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("evaluate", __doc__, DECLARES, run, argv, add_arguments)


if __name__ == "__main__":
    reproducible_cpu()  # torch's CPU kernels: the same bytes on any machine with AVX2 (before it is imported)
    sys.exit(main())
