"""embed: CLIP embeddings of every stored frame -> data/embeddings/ (one float16 array, index.csv, meta.json).

meta.json records every setting the embeddings depend on: the encoder's (declared params) and the frames'
(copied from data/frames/settings.json; this stage does not read frames_count or frames.* from params.yaml).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from clipvideo.cli.stage import StageContext, stage_main

DECLARES = ("embed",)


def run(context: StageContext) -> str:
    from clipvideo.config.encoders import check_encoder_files
    from clipvideo.embed.embedder import embed_frames

    params, settings = context.params, context.settings
    check_encoder_files(params.embed, context.paths.root)
    return embed_frames(context.paths, params.embed, settings.embed, settings.engine, settings.cache)


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("embed", __doc__, DECLARES, run, argv)


if __name__ == "__main__":
    sys.exit(main())
