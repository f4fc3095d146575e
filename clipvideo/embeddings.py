"""Stored frame embeddings: one float16 array (videos x frames x dim), a mask, and an index.

The array is written through a memory map, so memory stays flat however many videos there are. The forward
batches fill embed.batch_size across videos, cut at fixed places (plan_batches), so the bytes do not depend on
what a resumed run found finished, nor on the engine that ran them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from clipvideo.clip import ClipEncoder, encode_batch, load_encoder, loader_threads, prefetched, preprocess_jpegs
from clipvideo.contracts import FRAMES_SETTINGS_KEYS
from clipvideo.engine import Engine
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


@dataclass(frozen=True)
class Segment:
    """Frames [first, stop) of one video, as part of a forward batch."""

    row: int  # the video's row in the stored array
    video_id: str
    path: Path  # its frames file, absolute: a path every Ray node sees
    n_frames: int  # the frames data/frames.csv says the file holds
    first: int
    stop: int


@dataclass(frozen=True)
class BatchPlan:
    index: int
    segments: tuple[Segment, ...]

    @property
    def size(self) -> int:
        return sum(segment.stop - segment.first for segment in self.segments)


def plan_batches(videos: Sequence[tuple[str, Path]], n_frames: Sequence[int], batch_size: int) -> Iterator[BatchPlan]:
    """Every stored frame, video after video, cut into forward batches of `batch_size` (the last may be smaller).

    Batch k is always frames [k * batch_size, (k + 1) * batch_size) of that sequence, whatever an interrupted run
    had finished, so its composition, and with it every float the model returns (a matrix product's blocking can
    depend on the batch), is the same in a resumed run, an uninterrupted one and on any engine.
    """
    segments: list[Segment] = []
    filled = index = 0
    for row, ((video_id, path), count) in enumerate(zip(videos, n_frames, strict=True)):
        first = 0
        while first < count:
            take = min(count - first, batch_size - filled)
            segments.append(Segment(row, video_id, path.absolute(), count, first, first + take))
            filled, first = filled + take, first + take
            if filled == batch_size:
                yield BatchPlan(index, tuple(segments))
                segments, filled, index = [], 0, index + 1
    if segments:
        yield BatchPlan(index, tuple(segments))


@dataclass
class BatchResult:
    plan: BatchPlan
    features: np.ndarray  # (plan.size, dim) float16
    cached: bool  # found in the resume folder: an interrupted run computed it


@dataclass
class PreparedBatch:
    """A batch ready for the model (`images`), or its embeddings found in the resume folder (`cached`)."""

    plan: BatchPlan
    resume_file: Path
    cached: np.ndarray | None
    images: torch.Tensor | None


def frame_count_error(path: Path, expected: int) -> PipelineError:
    """The frames file and frames.csv disagree on how many frames the video has."""
    return PipelineError(f"{path}: not the {expected} frames data/frames.csv lists; rerun the frames stage")


class BatchEmbedder:
    """A batch plan -> its embeddings: from the resume folder when an interrupted run finished this very batch
    (the same videos, frames files by content hash, and frame ranges), else from the model, saved there first.

    The same code runs in the stage's process (local engine) and in every Ray actor, so both give the same bytes.
    """

    def __init__(self, encoder: ClipEncoder, resume_dir: Path) -> None:
        self.encoder = encoder
        self.resume_dir = resume_dir

    def prepare(self, plan: BatchPlan) -> PreparedBatch:
        """Read, hash and decode the batch's frames: the part that runs ahead of the model, in other threads."""
        digest = hashlib.sha256()
        contents = []
        for segment in plan.segments:
            content = segment.path.read_bytes()
            file_hash = hashlib.sha256(content).hexdigest()
            where = f"{segment.n_frames} {segment.first} {segment.stop}"
            digest.update(f"{segment.video_id} {file_hash} {where}\n".encode())
            contents.append(content)
        resume_file = self.resume_dir / f"{digest.hexdigest()[:32]}.npy"
        if resume_file.is_file():
            return PreparedBatch(plan, resume_file, np.load(resume_file), None)
        jpegs: list[bytes] = []
        for segment, content in zip(plan.segments, contents, strict=True):
            frames = load_frame_jpegs(io.BytesIO(content))
            if len(frames) != segment.n_frames:
                raise frame_count_error(segment.path, segment.n_frames)
            jpegs += frames[segment.first : segment.stop]
        images = preprocess_jpegs(jpegs, self.encoder)
        if self.encoder.device.type == "cuda":
            images = images.pin_memory()  # lets the copy to the GPU overlap the previous batch
        return PreparedBatch(plan, resume_file, None, images)

    def finish(self, prepared: PreparedBatch) -> BatchResult:
        """The forward for a batch not found in the resume folder; saved there before it is returned."""
        if prepared.cached is not None:
            return BatchResult(prepared.plan, prepared.cached, cached=True)
        features = encode_batch(self.encoder, prepared.images).astype(np.float16)
        with atomic_path(prepared.resume_file) as part, part.open("wb") as handle:
            np.save(handle, features)
        return BatchResult(prepared.plan, features, cached=False)


@dataclass(frozen=True)
class EmbedderSpec:
    """How another process (a Ray actor) builds the stage's BatchEmbedder: the same model, weights, seed,
    precision, torch threads (CPU floats can depend on them) and resume folder."""

    model: str
    weights: str
    seed: int
    precision: str
    device: str  # embed.device as set: auto | cpu | cuda
    threads: int
    resume_dir: Path

    def build(self, device: str) -> BatchEmbedder:
        torch.set_num_threads(self.threads)
        encoder = load_encoder(self.model, self.weights, self.seed, device, self.precision)
        return BatchEmbedder(encoder, self.resume_dir)


def embed_here(plans: Iterable[BatchPlan], embedder: BatchEmbedder) -> Iterator[BatchResult]:
    """The local engine: the next batches are read and decoded in threads while the model runs on this one."""
    prepared = prefetched(embedder.prepare, plans, workers=loader_threads(embedder.encoder.device))
    with contextlib.closing(prepared):  # an error or Ctrl-C here stops the prefetch threads at once
        for item in prepared:
            yield embedder.finish(item)


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
    engine: Engine | None = None,
    device: str = "auto",
) -> int:
    """Embed every stored frame of every video into `out_dir` (replaced atomically); returns images.

    Forward batches are `batch_size` frames across videos (plan_batches). Each finished batch is saved under
    `resume_root` first, so a killed run resumes where it stopped; the folder is removed once `out_dir` is
    complete, and `out_dir` appears whole or not at all. `engine`: where the batches run (default: this
    process); `device`: embed.device as set, for a distributed engine's workers.
    """
    dim = int(encoder.model.visual.output_dim)
    max_frames = max(n_frames, default=0)
    total = int(sum(n_frames))
    resume_dir = prepare_resume_dir(resume_root, encoder_resume_key(encoder, seed))
    plans = plan_batches(videos, n_frames, batch_size)
    if engine is None or engine.local:
        results = embed_here(plans, BatchEmbedder(encoder, resume_dir))
    else:
        spec = EmbedderSpec(
            encoder.source, encoder.weights, seed, encoder.precision, device, torch.get_num_threads(),
            resume_dir.absolute(),
        )  # fmt: skip
        results = engine.embed(plans, spec)
    resumed = 0
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        array = np.lib.format.open_memmap(
            tmp / ARRAY, mode="w+", dtype=np.float16, shape=(len(videos), max_frames, dim)
        )
        # closing: an error or Ctrl-C in this loop stops the engine's work at once, not when garbage collected
        with tqdm(total=total, unit="frame", desc="embed", disable=not progress) as bar, contextlib.closing(results):
            for result in results:
                offset = 0
                for segment in result.plan.segments:
                    size = segment.stop - segment.first
                    array[segment.row, segment.first : segment.stop] = result.features[offset : offset + size]
                    offset += size
                resumed += result.cached
                bar.update(offset)
        if bar.n != total:  # an engine that dropped a batch would leave zeros in the array
            raise PipelineError(f"embed: {bar.n} of {total} frames came back from the engine; rerun to resume")
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
        print(f"embed: resumed {resumed} of {-(-total // batch_size)} batches finished by an interrupted run")
    return total
