"""embed_text: CLIP text embeddings of the category prompts -> data/text/ (the zeroshot classifier).

Its own stage, so changing the prompts or categories re-embeds a few sentences and reruns zeroshot, not
every frame. Several templates are averaged per category (normalised, mean, normalised again).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from clipvideo.cli import stage_main
from clipvideo.clip import load_encoder, under_root
from clipvideo.embeddings import encoder_settings
from clipvideo.paths import ProjectPaths
from clipvideo.zeroshot import embed_prompts, save_text_embeddings

SECTIONS = ("seed", "embed", "embed_text", "dataset")


def run(paths: ProjectPaths, params: dict[str, Any], settings: dict[str, Any], _: argparse.Namespace) -> str:
    embed = params["embed"]
    categories = params["dataset"]["categories"]
    templates = params["embed_text"]["prompts"]
    model, pretrained = under_root(embed["model"], embed["pretrained"], paths.root)
    encoder = load_encoder(model, pretrained, params["seed"], settings["embed"]["device"], embed["precision"])
    text = embed_prompts(encoder, templates, categories, encoder_settings(params, encoder.name))
    save_text_embeddings(paths.text_dir, text)
    return (
        f"{len(categories)} categories x {len(templates)} prompt templates -> {paths.text_dir} ({encoder.describe()})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("embed_text", __doc__, SECTIONS, run, argv)


if __name__ == "__main__":
    sys.exit(main())
