"""check_params: validate params.yaml, settings.yaml and variants.yaml; writes nothing.

The first stage of dvc.yaml, declaring the whole params file: any change to params.yaml reruns it, so an
unknown or misspelled key (`dvc exp run -S +frame_count=8`) stops the run with the one-line message even
when no other stage would rerun and check it. It has no output, so its rerun reruns nothing else.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from clipvideo.cli.stage import StageContext, stage_main
from clipvideo.config.declared import ALL

DECLARES = (ALL,)


def run(context: StageContext) -> str:
    from clipvideo.config.variants import load_variants

    paths = context.paths  # stage_main validated params.yaml and settings.yaml before calling this
    variants = load_variants(paths.variants)
    return f"{paths.params}, {paths.settings} and {paths.variants} ({len(variants)} variants) are valid"


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("check_params", __doc__, DECLARES, run, argv)


if __name__ == "__main__":
    sys.exit(main())
