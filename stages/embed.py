"""embed: CLIP embeddings of every stored frame, and of one prompt per category -> data/embeddings/."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import torch

from clipvideo.cli import stage_main
from clipvideo.clip import load_encoder
from clipvideo.contracts import FRAMES_COLUMNS
from clipvideo.embeddings import embed_videos
from clipvideo.errors import PipelineError
from clipvideo.files import read_table
from clipvideo.manifest import is_safe_id
from clipvideo.paths import ProjectPaths
from clipvideo.zeroshot import embed_prompts, save_text_embeddings

SECTIONS = ("seed", "dataset", "embed")


def run(paths: ProjectPaths, params: dict[str, Any], _: argparse.Namespace) -> str:
    settings = params["embed"]
    rows = [row for row in read_table(paths.frames_table, FRAMES_COLUMNS) if row["status"] in ("ok", "short")]
    videos = []
    for row in rows:
        path = paths.frames_dir / f"{row['id']}.npz"
        if not is_safe_id(row["id"]) or not path.is_file():
            raise PipelineError(
                f"{paths.frames_table}: row {row['id']!r}: no frames file {path}; rerun the frames stage"
            )
        videos.append((row["id"], path))
    encoder = load_encoder(
        settings["model"], settings["pretrained"], params["seed"], settings["device"], settings["precision"]
    )
    print(f"embed: {encoder.describe()} on {encoder.device}, {torch.get_num_threads()} threads")
    meta = {"model": encoder.name, "pretrained": encoder.weights, "precision": settings["precision"],
            "note": encoder.describe()}  # fmt: skip
    images = embed_videos(
        videos,
        [int(row["n_frames"]) for row in rows],
        encoder,
        paths.embeddings_dir,
        settings["batch_size"],
        meta,
        resume_root=paths.embeddings_resume_dir,
        seed=params["seed"],
    )
    prompts = embed_prompts(encoder, settings["prompt"], params["dataset"]["categories"])
    save_text_embeddings(paths.embeddings_dir, prompts)
    return (
        f"{images} frames of {len(videos)} videos and {len(prompts.prompts)} category prompts "
        f"-> {paths.embeddings_dir} ({encoder.describe()})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("embed", __doc__, SECTIONS, run, argv)


if __name__ == "__main__":
    sys.exit(main())
