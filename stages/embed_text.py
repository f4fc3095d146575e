"""embed_text: CLIP text embeddings of the category prompts -> data/text/ (the zeroshot classifier).

Its own stage, so changing the prompts or categories re-embeds a few sentences and reruns zeroshot, not
every frame. Several templates are averaged per category (normalised, mean, normalised again).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from clipvideo.cli.stage import StageContext, stage_main

DECLARES = ("embed", "embed_text", "dataset.categories")


def run(context: StageContext) -> str:
    from clipvideo.config.encoders import check_encoder_files
    from clipvideo.embed.prompts import embed_category_prompts

    params = context.params
    check_encoder_files(params.embed, context.paths.root)
    return embed_category_prompts(context.paths, params.dataset.categories, params.embed_text, params.embed,
                                  context.settings.embed)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("embed_text", __doc__, DECLARES, run, argv)


if __name__ == "__main__":
    sys.exit(main())
