"""Joining the split with the stored embeddings: what the models train and are tested on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import overload

import numpy as np

from clipvideo.core.contracts import SPLIT_COLUMNS
from clipvideo.core.errors import PipelineError
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.tables import read_table
from clipvideo.embed.store import EmbeddingSet, load_embeddings


@dataclass
class LabelledSet:
    ids: list[str]
    frames: np.ndarray  # (videos, frames, dim) float16
    mask: np.ndarray  # (videos, frames) bool
    labels: np.ndarray  # (videos,) int, index into categories
    categories: list[str]
    dropped: int  # split rows without embeddings (their frames could not be decoded)


@overload
def split_set(paths: ProjectPaths, part: str, embeddings: EmbeddingSet | None = None) -> LabelledSet: ...
@overload
def split_set(
    paths: ProjectPaths, part: str, embeddings: EmbeddingSet | None, required: bool
) -> LabelledSet | None: ...


def split_set(
    paths: ProjectPaths, part: str, embeddings: EmbeddingSet | None = None, required: bool = True
) -> LabelledSet | None:
    """The `part` (train, val or test) videos that have embeddings, with labels; without any, an error (or None
    when not `required`)."""
    rows = read_table(paths.split_table, SPLIT_COLUMNS)
    categories = sorted({row["category"] for row in rows})
    embeddings = embeddings or load_embeddings(paths.embeddings_dir)
    available = set(embeddings.ids)
    chosen = [row for row in rows if row["split"] == part and row["id"] in available]
    dropped = sum(1 for row in rows if row["split"] == part and row["id"] not in available)
    if not chosen and not required:
        return None
    if not chosen:
        raise PipelineError(f"{paths.split_table}: no {part} video has embeddings; check data/frames.csv")
    index = embeddings.rows([row["id"] for row in chosen])
    return LabelledSet(
        ids=[row["id"] for row in chosen],
        frames=np.asarray(embeddings.frames[index]),
        mask=embeddings.mask[index],
        labels=np.array([categories.index(row["category"]) for row in chosen], dtype=np.int64),
        categories=categories,
        dropped=dropped,
    )
