"""Stored frame embeddings: one float16 array (videos x frames x dim), a mask, and an index.

The array is written through a memory map, so memory stays flat however many videos there are.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from clipvideo.clip import ClipEncoder, encode_batch, prefetched, preprocess_jpegs
from clipvideo.contracts import FRAMES_SETTINGS_KEYS
from clipvideo.errors import PipelineError
from clipvideo.files import atomic_path, prepare_resume_dir, read_table, resume_key, write_table
from clipvideo.params import dotted
from clipvideo.video import load_frame_jpegs

# The code that computes an embedding: a change to it invalidates the resume cache.
EMBEDDING_CODE = (Path(__file__).with_name("clip.py"), Path(__file__))

ARRAY = "frames.npy"
INDEX = "index.csv"
META = "meta.json"

# The encoder settings, as meta.json keys -> the params.yaml key each comes from (embed and embed_text declare them).
ENCODER_KEYS = {
    "model": "embed.model",
    "pretrained": "embed.pretrained",
    "precision": "embed.precision",
    "seed": "seed",
}
# Everything besides the video that decides its embeddings: the encoder's and the frames' settings (copied from
# data/frames/settings.json). Recorded in meta.json, copied into every trained model, checked by predict.
EMBEDDING_KEYS = {**ENCODER_KEYS, **FRAMES_SETTINGS_KEYS}


def encoder_settings(params: dict[str, Any], model_name: str, keys: dict[str, str] = ENCODER_KEYS) -> dict[str, Any]:
    """The `keys` values params.yaml gives now; `model_name` is embed.model resolved (a config's stem)."""
    return {key: dotted(params, source) for key, source in keys.items()} | {"model": model_name}


def recorded_encoder(meta: dict[str, Any]) -> dict[str, Any]:
    """The EMBEDDING_KEYS values an embeddings meta.json records (None where it predates a key): what a model keeps."""
    return {key: meta.get(key) for key in EMBEDDING_KEYS}


def frames_settings(path: Path) -> dict[str, Any]:
    """The settings the frames stage recorded next to the frames it made (data/frames/settings.json)."""
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"{path}: missing; rerun the frames stage") from None
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path}: not readable JSON ({type(exc).__name__}); rerun the frames stage") from None
    if not isinstance(recorded, dict) or set(recorded) != set(FRAMES_SETTINGS_KEYS):
        raise PipelineError(f"{path}: expected the keys {', '.join(FRAMES_SETTINGS_KEYS)}; rerun the frames stage")
    return recorded


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


@dataclass(frozen=True)
class VideoWork:
    """One video's next piece for the model: a batch of its frames, or its embeddings found in the resume cache."""

    row: int
    first: int  # index of the batch's first frame within the video
    batch: torch.Tensor | None
    cached: np.ndarray | None
    resume_file: Path


def encoder_resume_key(encoder: ClipEncoder, seed: int) -> str:
    """Everything besides the frames that changes an embedding: model (and its config file), weights, precision,
    seed, and this code. Names the resume folder, so a changed setting never reuses old embeddings."""
    files = {
        source: [Path(source).stat().st_size, Path(source).stat().st_mtime_ns]
        for source in (encoder.source, encoder.weights)
        if Path(source).is_file()
    }
    parts = {"model": encoder.name, "weights": encoder.weights, "precision": encoder.precision, "seed": seed}
    return resume_key({**parts, "files": files}, EMBEDDING_CODE)


def video_work(
    videos: Sequence[tuple[str, Path]], encoder: ClipEncoder, batch_size: int, resume_dir: Path
) -> Iterator[VideoWork]:
    """Per video: its cached embeddings, or its frames in batches of at most `batch_size`.

    Batches never mix videos, so a video's embeddings do not depend on its neighbours: a resumed run
    gives the same bytes as an uninterrupted one. The frames file is read once, for its hash and its JPEGs.
    """
    for row, (video_id, path) in enumerate(videos):
        content = path.read_bytes()
        resume_file = resume_dir / f"{video_id}.{hashlib.sha256(content).hexdigest()[:16]}.npy"
        if resume_file.is_file():
            yield VideoWork(row, 0, None, np.load(resume_file), resume_file)
            continue
        jpegs = load_frame_jpegs(io.BytesIO(content))
        for first in range(0, len(jpegs), batch_size):
            batch = preprocess_jpegs(jpegs[first : first + batch_size], encoder)
            if encoder.device.type == "cuda":
                batch = batch.pin_memory()  # lets the copy to the GPU overlap the previous batch
            yield VideoWork(row, first, batch, None, resume_file)


def frame_count_error(path: Path, expected: int) -> PipelineError:
    """The frames file and frames.csv disagree on how many frames the video has."""
    return PipelineError(f"{path}: not the {expected} frames data/frames.csv lists; rerun the frames stage")


def embed_videos(
    videos: Sequence[tuple[str, Path]],
    n_frames: Sequence[int],
    encoder: ClipEncoder,
    out_dir: Path,
    batch_size: int,
    meta: dict,
    resume_root: Path,
    seed: int,
    progress: bool = True,
) -> int:
    """Embed every stored frame of every video into `out_dir` (replaced atomically); returns images.

    Each finished video is saved under `resume_root` first, so a killed run resumes where it stopped;
    the folder is removed once `out_dir` is complete; `out_dir` appears whole or not at all.
    """
    dim = int(encoder.model.visual.output_dim)
    max_frames = max(n_frames, default=0)
    total = int(sum(n_frames))
    resume_dir = prepare_resume_dir(resume_root, encoder_resume_key(encoder, seed))
    resumed = 0
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        array = np.lib.format.open_memmap(
            tmp / ARRAY, mode="w+", dtype=np.float16, shape=(len(videos), max_frames, dim)
        )
        pending: dict[int, np.ndarray] = {}  # videos whose batches are not all done yet
        work_items = prefetched(video_work(videos, encoder, batch_size, resume_dir))
        # closing: an error or Ctrl-C in this loop stops the prefetch thread at once, not when garbage collected
        with tqdm(total=total, unit="frame", desc="embed", disable=not progress) as bar, contextlib.closing(work_items):
            for work in work_items:
                count = n_frames[work.row]
                if work.cached is not None:
                    if len(work.cached) != count:
                        raise frame_count_error(videos[work.row][1], count)
                    array[work.row, :count] = work.cached
                    resumed += 1
                    bar.update(count)
                    continue
                features = encode_batch(encoder, work.batch)
                done = work.first + len(features)
                if done > count:
                    raise frame_count_error(videos[work.row][1], count)
                embeddings = pending.setdefault(work.row, np.zeros((count, dim), dtype=np.float16))
                embeddings[work.first : done] = features
                bar.update(len(features))
                if done == count:
                    del pending[work.row]
                    with atomic_path(work.resume_file) as part, part.open("wb") as handle:
                        np.save(handle, embeddings)
                    array[work.row, :count] = embeddings
        if pending:
            raise frame_count_error(videos[min(pending)][1], n_frames[min(pending)])
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
    shutil.rmtree(resume_root, ignore_errors=True)
    if resumed and progress:
        print(f"embed: resumed {resumed} of {len(videos)} videos finished by an interrupted run")
    return total
