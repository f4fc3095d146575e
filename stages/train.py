"""train: fit one classifier variant on the stored train embeddings -> models/<variant>.pt, its curve.

The variant (variants.yaml) declares its own params: this stage reads those and no others.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from clipvideo.cli.stage import Declaration, StageContext, stage_main
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.system import reproducible_cpu


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("variant", help="which classifier to train (linear, transformer-mixup, logreg, ...)")


def declares(args: argparse.Namespace, paths: ProjectPaths) -> Declaration:
    from clipvideo.config.variants import variant_spec

    return Declaration(tuple(variant_spec(args.variant, paths.variants).params), f"variants.yaml: {args.variant}")


def run(context: StageContext) -> str:
    from clipvideo.config.variants import variant_spec
    from clipvideo.modeling.training import train_variant

    variant = context.args.variant
    spec = variant_spec(variant, context.paths.variants)
    return train_variant(context.paths, variant, spec, context.params, context.settings.train.device)


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("train", __doc__, declares, run, argv, add_arguments)


if __name__ == "__main__":
    reproducible_cpu()  # torch's CPU kernels: the same bytes on any machine with AVX2 (before it is imported)
    sys.exit(main())
