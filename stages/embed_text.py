"""embed_text: CLIP text embeddings of the category prompts -> data/text/ (the zeroshot classifier).

Its own stage, so changing the prompts or categories re-embeds a few sentences and reruns zeroshot, not
every frame. Several templates are averaged per category (normalised, mean, normalised again).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from clipvideo.cli.stage import StageContext, stage_main

DECLARES = ("embed", "embed_text", "dataset.categories", "dataset.source", "dataset.folder")


def run(context: StageContext) -> str:
    from clipvideo.acquire.folder import source_categories
    from clipvideo.config.encoders import check_encoder_files
    from clipvideo.embed.prompts import embed_category_prompts

    params = context.params
    check_encoder_files(params.embed, context.paths.root)
    categories = source_categories(params.dataset, context.paths.root)  # null: the folder's subfolders
    return embed_category_prompts(context.paths, categories, params.embed_text, params.embed, context.settings.embed)


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("embed_text", __doc__, DECLARES, run, argv)


if __name__ == "__main__":
    sys.exit(main())
