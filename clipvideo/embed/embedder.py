"""The embed step: every stored frame through the encoder -> data/embeddings/ (one float16 array, index, meta).

Cost follows the change: each video's embeddings are kept in the per-video cache (core.cache) under a key made
of its frames file's bytes, the encoder (model, config and weights by content, architecture, precision; embed.seed
for a random init), this code and the runtime fingerprint (torch and open_clip versions, device type, precision
path: fingerprint.py). A rerun embeds only the videos it has not seen, the encoder is not even loaded when it has
seen them all, and a killed run resumes from the videos it finished. The frames still to embed go through the
engine in fixed forward batches (batches.py), so a video's bytes do not depend on which other videos were embedded
with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from clipvideo.config.schema import CacheSettings, EmbedParams, EmbedSettings, EngineSettings
from clipvideo.core.cache import Entry, VideoCache, code_digest, entry_key, open_cache, sha256_files
from clipvideo.core.contracts import EMBEDDINGS_INDEX_COLUMNS, FRAMES_COLUMNS, USABLE_FRAMES
from clipvideo.core.errors import PipelineError
from clipvideo.core.files import atomic_directory, write_json_atomic
from clipvideo.core.ids import is_safe_id
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.tables import read_table, write_table
from clipvideo.core.text import plural
from clipvideo.embed.batches import FORWARD_BATCH, Batch, BatchResult, plan_batches
from clipvideo.embed.encoder import (
    ClipEncoder,
    check_encoder,
    checked_device,
    encode_batch,
    encoder_identity,
    load_encoder,
    loader_threads,
    open_encoder,
    preprocess_jpegs,
    resolve_model_name,
    under_root,
)
from clipvideo.embed.fingerprint import encoder_runtime
from clipvideo.embed.store import ARRAY, INDEX, META, encoder_record, encoder_seed, frames_settings
from clipvideo.engines.engine import Engine
from clipvideo.engines.factory import open_engine
from clipvideo.video import store
from clipvideo.video.store import load_frame_jpegs

T = TypeVar("T")
R = TypeVar("R")

# The code an embedding depends on: this package and the frame store it reads. dvc.yaml lists them as deps of
# the embed stage (a test checks), and every cache key hashes them, so an edit reruns the stage and never
# reuses embeddings of the old code.
EMBED_CODE = (Path(__file__).parent, Path(store.__file__))
KIND = "embeddings"


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


@dataclass
class PreparedBatch:
    batch: Batch
    images: torch.Tensor  # (FORWARD_BATCH, 3, size, size): the batch's frames, then zero padding


class BatchEmbedder:
    """A batch -> its embeddings. The same code runs in the stage's process (local engine) and in every Ray
    actor, so both give the same bytes."""

    def __init__(self, encoder: ClipEncoder) -> None:
        self.encoder = encoder

    def runtime(self) -> dict[str, Any]:
        """The runtime fingerprint of this process running this model (what a Ray replica checks)."""
        return encoder_runtime(self.encoder.device, self.encoder.precision)

    def prepare(self, batch: Batch) -> PreparedBatch:
        """Decode and normalise the batch's frames, padded to the fixed size: runs ahead of the model, in threads."""
        images = preprocess_jpegs(batch.jpegs, self.encoder)
        padding = FORWARD_BATCH - len(images)
        if padding:
            images = torch.cat([images, images.new_zeros((padding, *images.shape[1:]))])
        if self.encoder.device.type == "cuda":
            images = images.pin_memory()  # lets the copy to the GPU overlap the previous batch
        return PreparedBatch(batch, images)

    def finish(self, prepared: PreparedBatch) -> BatchResult:
        features = encode_batch(self.encoder, prepared.images)[: prepared.batch.size].astype(np.float16)
        return BatchResult(prepared.batch, features)


@dataclass(frozen=True)
class EmbedderSpec:
    """How another process (a Ray actor, maybe on a machine without the project's files) builds the stage's
    BatchEmbedder: the same model, weights, seed, precision and torch threads (CPU floats can depend on them).
    A model config file and a checkpoint file travel as their bytes, never as paths of the driver's."""

    model: str  # an open_clip name, or the name of the config in `config`
    weights: str  # none, a pretrained tag, or "" for the checkpoint in `checkpoint`
    seed: int | None  # embed.seed for a random init; None for pretrained weights
    precision: str
    device: str  # embed.device as set: auto | cpu | cuda
    threads: int
    config: bytes | None = None  # a model config .json's content
    checkpoint: bytes | None = None  # a checkpoint file's content
    runtime: dict[str, Any] = dataclasses.field(default_factory=dict)  # the stage's key: a replica must match it

    @classmethod
    def of(cls, embed: EmbedParams, device: str, root: Path, runtime: dict[str, Any]) -> EmbedderSpec:
        """The encoder params.yaml's `embed` section names (paths against the project root, as open_encoder takes
        them), without building it: the driver of a Ray run never needs the model. `runtime`: the fingerprint the
        stage keys the embeddings by."""
        model, pretrained = under_root(embed.model, embed.pretrained, root)
        name = resolve_model_name(model)
        config = Path(model).read_bytes() if model.endswith(".json") else None
        checkpoint = Path(pretrained).read_bytes() if Path(pretrained).is_file() else None
        return cls(
            name if config else model,
            "" if checkpoint else pretrained,
            encoder_seed(embed),
            embed.precision,
            device,
            torch.get_num_threads(),
            config,
            checkpoint,
            runtime,
        )

    def build(self, device: str) -> BatchEmbedder:
        """The replica, for the process that will hold it (a Ray actor's, never the stage's): that process takes
        the stage's torch thread count, which CPU floats can depend on."""
        torch.set_num_threads(self.threads)
        with tempfile.TemporaryDirectory(prefix="clipvideo-encoder-") as folder:
            model, weights = self.model, self.weights
            if self.config is not None:
                model = str(Path(folder) / f"{self.model}.json")  # open_clip names a config by its file's stem
                Path(model).write_bytes(self.config)
            if self.checkpoint is not None:
                weights = str(Path(folder) / "checkpoint.pt")
                Path(weights).write_bytes(self.checkpoint)
            return BatchEmbedder(load_encoder(model, weights, self.seed, device, self.precision))


def embed_here(batches: Iterable[Batch], embedder: BatchEmbedder) -> Iterator[BatchResult]:
    """The local engine: the next batches are decoded in threads while the model runs on this one."""
    prepared = prefetched(embedder.prepare, batches, workers=loader_threads(embedder.encoder.device))
    with contextlib.closing(prepared):  # an error or Ctrl-C here stops the prefetch threads at once
        for item in prepared:
            yield embedder.finish(item)


@dataclass(frozen=True)
class FramesFile:
    video_id: str
    path: Path
    n_frames: int  # what data/frames.csv says the file holds
    key: str  # the cache key of its embeddings


def frames_of(video: FramesFile) -> list[bytes]:
    """The JPEGs of a frames file, checked against frames.csv."""
    jpegs = load_frame_jpegs(video.path)
    if len(jpegs) != video.n_frames:
        raise PipelineError(
            f"{video.path}: not the {video.n_frames} frames data/frames.csv lists; rerun the frames stage"
        )
    return jpegs


def embed_missing(
    videos: Sequence[FramesFile],
    embed: Callable[[Iterator[Batch]], Iterator[BatchResult]],
    cache: VideoCache,
    progress: bool = True,
    runtime: dict[str, Any] | None = None,
) -> dict[str, Entry]:
    """Embed `videos` through `embed` (an engine's batch runner); each video goes into the cache (with the
    `runtime` fingerprint that made it) as soon as its last frame is back, so a killed run keeps every finished
    video. Returns the entries by key."""
    parts: dict[int, dict[int, np.ndarray]] = {}  # video -> first frame -> rows, until the video is complete
    done: dict[str, Entry] = {}
    batches = plan_batches([v.n_frames for v in videos], lambda i: frames_of(videos[i]))
    results = embed(batches)
    total = sum(v.n_frames for v in videos)
    with tqdm(total=total, unit="frame", desc="embed", disable=not progress) as bar, contextlib.closing(results):
        for result in results:  # closing: an error or Ctrl-C here stops the engine's work at once
            offset = 0
            for segment in result.batch.segments:
                size = segment.stop - segment.first
                rows = parts.setdefault(segment.video, {})
                rows[segment.first] = result.features[offset : offset + size]
                offset += size
                video = videos[segment.video]
                if sum(len(r) for r in rows.values()) == video.n_frames:
                    array = np.concatenate([rows[first] for first in sorted(rows)])
                    buffer = BytesIO()
                    np.save(buffer, array)
                    done[video.key] = cache.put(
                        KIND, video.key, {"n_frames": video.n_frames}, buffer.getvalue(), ".npy", runtime
                    )
                    del parts[segment.video]
            bar.update(offset)
    if len(done) != len(videos):  # an engine that dropped a batch
        raise PipelineError(f"embed: {len(done)} of {len(videos)} videos came back from the engine; rerun")
    return done


def write_embeddings(out_dir: Path, videos: Sequence[FramesFile], entries: dict[str, Entry], meta: dict) -> int:
    """data/embeddings/ from the videos' cache entries, through a memory map (memory stays flat), replaced whole;
    returns the frames written."""
    max_frames = max((v.n_frames for v in videos), default=0)
    dim = 0
    with atomic_directory(out_dir) as tmp:
        array = None
        for row, video in enumerate(videos):
            entry = entries[video.key]
            assert entry.payload is not None
            features = np.load(entry.payload)
            if array is None:
                dim = features.shape[1]
                array = np.lib.format.open_memmap(
                    tmp / ARRAY, mode="w+", dtype=np.float16, shape=(len(videos), max_frames, dim)
                )
            array[row, : video.n_frames] = features
        if array is None:
            raise PipelineError("embed: no video has frames; see data/frames.csv")
        array.flush()
        del array
        index = ({"id": v.video_id, "n_frames": v.n_frames} for v in videos)
        write_table(tmp / INDEX, EMBEDDINGS_INDEX_COLUMNS, index)
        write_json_atomic(tmp / META, {**meta, "dim": dim, "max_frames": max_frames})
    return sum(v.n_frames for v in videos)


def embed_recipe(identity: dict[str, Any], runtime: dict[str, Any]) -> dict[str, Any]:
    """Everything but the frames that decides an embeddings cache entry (predict keys its entries the same way)."""
    return {"kind": KIND, **identity, "code": code_digest(EMBED_CODE), "runtime": runtime}


def frames_files(paths: ProjectPaths, recipe: dict[str, Any]) -> list[FramesFile]:
    """The usable rows of data/frames.csv, each with its frames file and its embeddings' cache key."""
    usable = []
    for row in read_table(paths.frames_table, FRAMES_COLUMNS):
        if row["status"] not in USABLE_FRAMES:
            continue
        path = paths.frames_dir / f"{row['id']}.npz"
        if not is_safe_id(row["id"]) or not path.is_file():
            raise PipelineError(
                f"{paths.frames_table}: row {row['id']!r}: no frames file {path}; rerun the frames stage"
            )
        usable.append((row["id"], path, int(row["n_frames"])))
    digests = sha256_files([path for _, path, _ in usable], "embed: hashing frames", unit="video")
    return [
        FramesFile(video_id, path, n_frames, entry_key({**recipe, "frames": digest}))
        for (video_id, path, n_frames), digest in zip(usable, digests, strict=True)
    ]


def embed_frames(
    paths: ProjectPaths,
    embed: EmbedParams,
    settings: EmbedSettings,
    engine_settings: EngineSettings,
    cache_settings: CacheSettings,
) -> str:
    """data/frames/ -> data/embeddings/; meta.json records every setting the embeddings depend on: the encoder's
    (declared params, a config or checkpoint file's SHA-256), the frames' (copied from data/frames/settings.json:
    embed does not read frames_count or frames.* from params.yaml) and the runtime fingerprint (`runtime`).
    Returns the summary line."""
    made_with = frames_settings(paths.frames_settings)
    identity = encoder_identity(embed, paths.root)
    note = identity.pop("note")
    cache = open_cache(paths.root, cache_settings.dir, cache_settings.max_gb, cache_settings.enabled, paths.data)
    # first: a cluster that does not answer says so; and the device the model runs on is part of every key
    with open_engine(engine_settings) as engine:
        runtime = encoder_runtime(model_device(engine, embed, settings.device), embed.precision)
        recipe = embed_recipe(identity, runtime)
        videos = frames_files(paths, recipe)
        keys = dict.fromkeys(v.key for v in videos)  # identical frames: looked up (and embedded) once
        entries = {key: entry for key in keys if (entry := cache.get(KIND, key)) is not None}
        todo = list({v.key: v for v in videos if v.key not in entries}.values())
        where = "nothing to compute"
        if todo:
            device, runner = batch_runner(engine, embed, settings.device, paths.root, runtime)
            print(f"embed: {note} on {device}, {torch.get_num_threads()} threads")
            entries |= embed_missing(todo, runner, cache, runtime=runtime)
            where = engine.describe()
    meta = {**encoder_record(embed, identity), **made_with, "runtime": runtime, "note": note}
    images = write_embeddings(paths.embeddings_dir, videos, entries, meta)
    cache.evict()
    counts = f"{plural(len(todo), 'video')} embedded, {len(videos) - len(todo)} reused from the cache"
    return f"{images} frames of {len(videos)} videos -> {paths.embeddings_dir} ({note}); {counts}; {where}"


def model_device(engine: Engine, embed: EmbedParams, device: str) -> torch.device:
    """The device the model runs on: embed.device resolved here (local engine), or on the cluster's replicas (Ray:
    auto means CUDA when the cluster has a GPU)."""
    if engine.local:
        return checked_device(device, embed.precision)
    return torch.device(engine.replica_device(device))


def batch_runner(
    engine: Engine, embed: EmbedParams, device: str, root: Path, runtime: dict[str, Any]
) -> tuple[torch.device, Callable[[Iterator[Batch]], Iterator[BatchResult]]]:
    """The device embed.device names here, and how the engine embeds batches: in this process (the model is built
    here), or on model replicas built from the params (it is built only there; the params are checked here, and
    each replica checks its runtime fingerprint against `runtime`)."""
    if engine.local:
        encoder = open_encoder(embed, device, root)
        return encoder.device, lambda batches: embed_here(batches, BatchEmbedder(encoder))
    here = check_encoder(embed, device, root)
    spec = EmbedderSpec.of(embed, device, root, runtime)
    return here, lambda batches: engine.replicas(spec, batches, lambda batch: f"embedding batch {batch.index}")
