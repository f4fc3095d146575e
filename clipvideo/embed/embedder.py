"""The embedder: every stored frame through the encoder, in fixed forward batches, on the engine the settings
name, into one float16 array (data/embeddings/).

The array is written through a memory map, so memory stays flat however many videos there are. The forward
batches fill `embed.batch_size` across videos, cut at fixed places (batches.plan_batches), so the bytes do not
depend on what a resumed run found finished, nor on the engine that ran them. Each finished batch is kept in
data/embeddings-resume/ until the run completes, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from tqdm import tqdm

from clipvideo.config.schema import EmbedParams, EmbedSettings, EngineSettings
from clipvideo.core.checkpoint import Checkpoint
from clipvideo.core.contracts import EMBEDDINGS_INDEX_COLUMNS, FRAMES_COLUMNS, USABLE_FRAMES
from clipvideo.core.errors import PipelineError
from clipvideo.core.files import atomic_directory, atomic_path, write_json_atomic
from clipvideo.core.ids import is_safe_id
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.tables import read_table, write_table
from clipvideo.embed.batches import BatchPlan, BatchResult, plan_batches
from clipvideo.embed.encoder import (
    ClipEncoder,
    encode_batch,
    load_encoder,
    loader_threads,
    open_encoder,
    preprocess_jpegs,
)
from clipvideo.embed.store import ARRAY, INDEX, META, encoder_record, frames_settings
from clipvideo.engines.engine import Engine, open_engine
from clipvideo.video import store
from clipvideo.video.store import load_frame_jpegs

T = TypeVar("T")
R = TypeVar("R")

# The code an embedding depends on: this package and the frame store it reads. dvc.yaml lists them as deps of
# the embed stage (a test checks), and the resume recipe hashes them, so an edit reruns the stage and never
# reuses batches of the old code.
EMBED_CODE = (Path(__file__).parent, Path(store.__file__))


def encoder_recipe(encoder: ClipEncoder, seed: int) -> dict:
    """Everything besides the frames that changes an embedding: model (and its config file), weights, precision
    and seed (with EMBED_CODE, the resume recipe), so a changed setting never reuses old embeddings."""
    files = {
        source: [Path(source).stat().st_size, Path(source).stat().st_mtime_ns]
        for source in (encoder.source, encoder.weights)
        if Path(source).is_file()
    }
    parts = {"model": encoder.name, "weights": encoder.weights, "precision": encoder.precision, "seed": seed}
    return {**parts, "files": files}


@dataclass
class PreparedBatch:
    """A batch ready for the model (`images`), or its embeddings found in the resume folder (`cached`)."""

    plan: BatchPlan
    resume_file: Path
    cached: np.ndarray | None
    images: torch.Tensor | None


def prefetched(prepare: Callable[[T], R], items: Iterable[T], workers: int = 1, depth: int = 2) -> Iterator[R]:
    """`prepare(item)` for each item, in order, computed ahead in `workers` threads while the caller works
    on earlier results (the model's forward on the previous batch).

    At most `workers + depth` results are in progress or waiting, so memory stays flat. When the consumer
    stops early (an error, Ctrl-C, or closing this generator), what has not started is cancelled.
    """
    pool = ThreadPoolExecutor(workers, thread_name_prefix="prefetch")
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(prepare, item))
            if len(pending) >= workers + depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


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
            frames = load_frame_jpegs(content)
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
    checkpoint: Checkpoint,
    seed: int,
    progress: bool = True,
    engine: Engine | None = None,
    device: str = "auto",
) -> int:
    """Embed every stored frame of every video into `out_dir` (replaced atomically); returns images.

    Forward batches are `batch_size` frames across videos (plan_batches). Each finished batch is saved in the
    checkpoint first, so a killed run resumes where it stopped; it is cleared once `out_dir` is complete, and
    `out_dir` appears whole or not at all. `engine`: where the batches run (default: this
    process); `device`: embed.device as set, for a distributed engine's workers.
    """
    dim = int(encoder.model.visual.output_dim)
    max_frames = max(n_frames, default=0)
    total = int(sum(n_frames))
    checkpoint.open()
    resume_dir = checkpoint.folder.absolute()  # absolute: Ray actors write there
    plans = plan_batches(videos, n_frames, batch_size)
    if engine is None or engine.local:
        results = embed_here(plans, BatchEmbedder(encoder, resume_dir))
    else:
        spec = EmbedderSpec(
            encoder.source, encoder.weights, seed, encoder.precision, device, torch.get_num_threads(),
            resume_dir,
        )  # fmt: skip
        results = engine.replicas(spec, plans, lambda plan: f"embedding batch {plan.index}")
    resumed = 0
    with atomic_directory(out_dir) as tmp:
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
        index = ({"id": v, "n_frames": n} for (v, _), n in zip(videos, n_frames, strict=True))
        write_table(tmp / INDEX, EMBEDDINGS_INDEX_COLUMNS, index)
        write_json_atomic(tmp / META, {**meta, "dim": dim, "max_frames": max_frames})
    checkpoint.clear()
    if resumed and progress:
        print(f"embed: resumed {resumed} of {-(-total // batch_size)} batches finished by an interrupted run")
    return total


def embed_frames(paths: ProjectPaths, embed: EmbedParams, seed: int, settings: EmbedSettings,
                 engine_settings: EngineSettings) -> str:  # fmt: skip
    """data/frames/ -> data/embeddings/; meta.json records every setting the embeddings depend on: the encoder's
    (declared params) and the frames' (copied from data/frames/settings.json: embed does not read frames_count
    or frames.* from params.yaml). Returns the summary line."""
    rows = [row for row in read_table(paths.frames_table, FRAMES_COLUMNS) if row["status"] in USABLE_FRAMES]
    videos = []
    for row in rows:
        path = paths.frames_dir / f"{row['id']}.npz"
        if not is_safe_id(row["id"]) or not path.is_file():
            raise PipelineError(
                f"{paths.frames_table}: row {row['id']!r}: no frames file {path}; rerun the frames stage"
            )
        videos.append((row["id"], path))
    made_with = frames_settings(paths.frames_settings)
    encoder = open_encoder(embed, seed, settings.device, paths.root)
    print(f"embed: {encoder.describe()} on {encoder.device}, {torch.get_num_threads()} threads")
    meta = {**encoder_record(embed, seed, encoder.name), **made_with, "note": encoder.describe()}
    checkpoint = Checkpoint(paths.embeddings_resume_dir, encoder_recipe(encoder, seed), EMBED_CODE)
    with open_engine(engine_settings) as engine:
        images = embed_videos(videos, [int(row["n_frames"]) for row in rows], encoder, paths.embeddings_dir,
                              settings.batch_size, meta, checkpoint, seed, engine=engine,
                              device=settings.device)  # fmt: skip
        where = engine.describe()
    return f"{images} frames of {len(videos)} videos -> {paths.embeddings_dir} ({encoder.describe()}); {where}"
