"""check_params: validate params.yaml, settings.yaml and variants.yaml, and check that this environment runs the
pipeline (torch and torchvision match, PyAV, open_clip, ffmpeg: `python -m clipvideo doctor`), then that embed.model
and embed.pretrained exist and fit together (the embed stage's own check: a tag's weights need the network they
were trained on) -> data/checked.txt.

The gate of the DAG: manifest and embed_text depend on its output and every other stage on theirs, so
`dvc repro <any stage>` runs it first, and its output is missing from a fresh clone, so the first run there checks
before any work. It declares the whole params file: any change to params.yaml reruns it, so an unknown or
misspelled key (`dvc exp run -S +frame_count=8`) stops the run with the one-line message even when no other
stage would rerun and check it. Its output is the verdict alone (the same bytes on every pass): no cascade.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from clipvideo.cli.stage import StageContext, stage_main
from clipvideo.config.declared import ALL

DECLARES = (ALL,)
PASSED = "passed: params.yaml, settings.yaml, variants.yaml, the environment and the encoder\n"


def run(context: StageContext) -> str:
    from clipvideo.cli.doctor import check_environment
    from clipvideo.config.encoders import check_encoder_files
    from clipvideo.config.variants import load_variants
    from clipvideo.core.files import write_text_atomic

    paths = context.paths  # stage_main validated params.yaml and settings.yaml before calling this
    check_encoder_files(context.params.embed, paths.root)  # a model file DVC would not track
    variants = load_variants(paths.variants)
    environment = check_environment()
    from clipvideo.embed.encoder import check_embed_params  # open_clip: only once the environment is known to work

    check_embed_params(context.params.embed, paths.root)  # the model, its weights, and the network they need
    write_text_atomic(paths.checked, PASSED)  # the verdict alone: the same bytes on every machine and every pass
    return (
        f"params.yaml, settings.yaml and variants.yaml ({len(variants)} variants) are valid; {environment} "
        f"-> {paths.checked}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("check_params", __doc__, DECLARES, run, argv)


if __name__ == "__main__":
    sys.exit(main())
