"""Stored frame embeddings: one float16 array (videos x frames x dim), a mask, and an index.

The array is written through a memory map, so memory stays flat however many videos there are.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from clipvideo.clip import ClipEncoder, encode_batch, prefetched, preprocess_jpegs
from clipvideo.errors import PipelineError
from clipvideo.files import atomic_path, read_table, write_table
from clipvideo.video import load_frame_jpegs

ARRAY = "frames.npy"
INDEX = "index.csv"
META = "meta.json"


@dataclass
class EmbeddingSet:
    ids: list[str]
    frames: np.ndarray  # (videos, max_frames, dim) float16
    n_frames: np.ndarray  # (videos,) int
    meta: dict

    @property
    def mask(self) -> np.ndarray:
        return np.arange(self.frames.shape[1])[None, :] < self.n_frames[:, None]

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        position = {video_id: i for i, video_id in enumerate(self.ids)}
        missing = [i for i in ids if i not in position]
        if missing:
            raise PipelineError(f"embeddings: no embedding for video {missing[0]!r}; rerun the embed stage")
        return np.array([position[i] for i in ids], dtype=np.int64)


def load_embeddings(directory: Path, mmap: bool = True) -> EmbeddingSet:
    if not (directory / ARRAY).is_file():
        raise PipelineError(f"{directory}: no embeddings; run the embed stage first (dvc repro)")
    index = read_table(directory / INDEX, ("id", "n_frames"))
    frames = np.load(directory / ARRAY, mmap_mode="r" if mmap else None)
    meta = json.loads((directory / META).read_text(encoding="utf-8"))
    return EmbeddingSet(
        ids=[row["id"] for row in index],
        frames=frames,
        n_frames=np.array([int(row["n_frames"]) for row in index], dtype=np.int64),
        meta=meta,
    )


def frame_batches(
    videos: Sequence[tuple[str, list[bytes] | Path]], encoder: ClipEncoder, batch_size: int
) -> Iterator[tuple[list[tuple[int, int]], torch.Tensor]]:
    """(slots, batch): slots are (video row, frame index) for every image in the batch."""
    slots: list[tuple[int, int]] = []
    jpegs: list[bytes] = []
    for row, (_, source) in enumerate(videos):
        frames = load_frame_jpegs(source) if isinstance(source, Path) else source
        for index, jpeg in enumerate(frames):
            slots.append((row, index))
            jpegs.append(jpeg)
            if len(jpegs) == batch_size:
                yield slots, preprocess_jpegs(jpegs, encoder)
                slots, jpegs = [], []
    if jpegs:
        yield slots, preprocess_jpegs(jpegs, encoder)


def embed_videos(
    videos: Sequence[tuple[str, Path]],
    n_frames: Sequence[int],
    encoder: ClipEncoder,
    out_dir: Path,
    batch_size: int,
    meta: dict,
    progress: bool = True,
) -> int:
    """Embed every stored frame of every video into `out_dir` (replaced atomically); returns images."""
    dim = int(encoder.model.visual.output_dim)
    max_frames = max(n_frames, default=0)
    total = int(sum(n_frames))
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        array = np.lib.format.open_memmap(
            tmp / ARRAY, mode="w+", dtype=np.float16, shape=(len(videos), max_frames, dim)
        )
        with tqdm(total=total, unit="frame", desc="embed", disable=not progress) as bar:
            for slots, features in prefetched(frame_batches(videos, encoder, batch_size)):
                rows, cols = zip(*slots, strict=True)
                array[list(rows), list(cols)] = encode_batch(encoder, features)
                bar.update(len(slots))
        array.flush()
        del array
        write_table(
            tmp / INDEX,
            ("id", "n_frames"),
            ({"id": v, "n_frames": n} for (v, _), n in zip(videos, n_frames, strict=True)),
        )
        (tmp / META).write_text(
            json.dumps({**meta, "dim": dim, "max_frames": max_frames}, indent=2) + "\n", encoding="utf-8"
        )
        if out_dir.exists():
            shutil.rmtree(out_dir)
    return total
