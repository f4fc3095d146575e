"""embed: CLIP embeddings of every stored frame -> data/embeddings/.

meta.json records every setting the embeddings depend on, so a trained model can be checked against them:
the encoder's (declared params) and the frames' (copied from data/frames/settings.json, which the frames
stage wrote with the frames: this stage does not read frames_count or frames.* from params.yaml).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from typing import Any

import torch

from clipvideo.cli import stage_main
from clipvideo.clip import load_encoder, under_root
from clipvideo.contracts import FRAMES_COLUMNS
from clipvideo.embeddings import embed_videos, encoder_settings, frames_settings
from clipvideo.engine import choose_engine, open_engine
from clipvideo.errors import PipelineError
from clipvideo.files import read_table
from clipvideo.manifest import is_safe_id
from clipvideo.paths import ProjectPaths

SECTIONS = ("seed", "embed")


def run(paths: ProjectPaths, params: dict[str, Any], settings: dict[str, Any], _: argparse.Namespace) -> str:
    embed = params["embed"]
    rows = [row for row in read_table(paths.frames_table, FRAMES_COLUMNS) if row["status"] in ("ok", "short")]
    videos = []
    for row in rows:
        path = paths.frames_dir / f"{row['id']}.npz"
        if not is_safe_id(row["id"]) or not path.is_file():
            raise PipelineError(
                f"{paths.frames_table}: row {row['id']!r}: no frames file {path}; rerun the frames stage"
            )
        videos.append((row["id"], path))
    made_with = frames_settings(paths.frames_settings)
    model, pretrained = under_root(embed["model"], embed["pretrained"], paths.root)
    encoder = load_encoder(model, pretrained, params["seed"], settings["embed"]["device"], embed["precision"])
    print(f"embed: {encoder.describe()} on {encoder.device}, {torch.get_num_threads()} threads")
    meta = {**encoder_settings(params, encoder.name), **made_with, "note": encoder.describe()}
    with contextlib.closing(open_engine(choose_engine(**settings["engine"]))) as engine:
        images = embed_videos(
            videos,
            [int(row["n_frames"]) for row in rows],
            encoder,
            paths.embeddings_dir,
            settings["embed"]["batch_size"],
            meta,
            resume_root=paths.embeddings_resume_dir,
            seed=params["seed"],
            engine=engine,
            device=settings["embed"]["device"],
        )
        where = engine.describe()
    return f"{images} frames of {len(videos)} videos -> {paths.embeddings_dir} ({encoder.describe()}); {where}"


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("embed", __doc__, SECTIONS, run, argv)


if __name__ == "__main__":
    sys.exit(main())
