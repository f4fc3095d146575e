"""Classifying new videos (files, folders walked recursively, http(s) urls, YouTube ids) with a trained variant.

It runs the pipeline's own steps on each: the frames step's sampling and frame store (frames_count, frames.*),
the embed step's embedder (the same encoder, batches and float16 rows), then the saved model. Both steps go
through the per-video cache under the keys the stages use, so a video the pipeline (or an earlier predict) has
seen is neither decoded nor embedded again. A model only means something on embeddings made the way its
training embeddings were, so any difference stops it. One video prints its answer; several (or `--out`) make a
table with one row per video: a video that cannot be read gets its status and reason, and never stops the rest.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate
from tqdm import tqdm

from clipvideo.acquire.fetch import Cookies, Fetcher, FetchError, is_remote
from clipvideo.acquire.links import LinkError, parse_link
from clipvideo.config.schema import Params, Settings
from clipvideo.config.variants import variant_spec
from clipvideo.core.cache import Entry, VideoCache, entry_key, open_cache, sha256_file
from clipvideo.core.contracts import PREDICT_OUT_COLUMNS, USABLE_FRAMES, VIDEO_SUFFIXES, Status
from clipvideo.core.errors import PipelineError
from clipvideo.core.ids import is_safe_id
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.tables import write_table
from clipvideo.core.text import shorten
from clipvideo.embed.embedder import KIND as EMBED_KIND
from clipvideo.embed.embedder import BatchEmbedder, FramesFile, embed_here, embed_missing, embed_recipe
from clipvideo.embed.encoder import checked_device, encoder_identity, open_encoder
from clipvideo.embed.fingerprint import encoder_runtime
from clipvideo.embed.store import EMBEDDING_KEYS, check_same_settings, encoder_record
from clipvideo.modeling.classifiers import predict_proba, variant_inputs
from clipvideo.modeling.saved import SavedModel, load_model
from clipvideo.video.fingerprint import decoder_fingerprint
from clipvideo.video.frames import KIND as FRAMES_KIND
from clipvideo.video.frames import decode_video, frames_made_with, frames_recipe

# Printed under the answer of a model trained on an untrained encoder's embeddings (the default sample run).
UNTRAINED_NOTE = (
    "note: the encoder has random weights (embed.pretrained: none), so this answer only shows that the "
    "pipeline runs; a correct one needs pretrained weights (embed.pretrained: openai)"
)


@dataclass
class Video:
    """One input: as the user named it, the file (None until fetched or when it cannot be), its id, its verdict."""

    name: str
    path: Path | None
    video_id: str = ""
    status: str = Status.OK.value
    reason: str = ""
    embeddings: np.ndarray | None = None


def video_files(folder: Path) -> list[Path]:
    """The video files under `folder`, recursively, sorted; hidden files and folders skipped, links to folders
    not followed."""
    found = []
    for current, dirs, names in os.walk(folder):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        found += [
            Path(current, name)
            for name in names
            if not name.startswith(".") and Path(name).suffix.lower() in VIDEO_SUFFIXES
        ]
    return sorted(found)


def expand(sources: list[str]) -> list[Video]:
    """Files as given, folders walked (video file names only), urls and YouTube ids as given; a name that is none
    of these is a PipelineError (a typo, not a bad video)."""
    videos = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = video_files(path)
            if not found:
                raise PipelineError(f"{source}: no video file under it (expected {', '.join(VIDEO_SUFFIXES)})")
            videos += [Video(str(file), file) for file in found]
        elif path.is_file():
            videos.append(Video(source, path))
        elif is_remote(source):
            videos.append(Video(source, None))
        else:
            raise PipelineError(f"{source}: no such file or folder (and not an http(s) url or a YouTube id)")
    return videos


def fetch(video: Video, work_dir: Path, paths: ProjectPaths, params: Params, settings: Settings) -> None:
    """A url downloaded the way the download stage does; its id is the stage's id for it."""
    try:
        video.video_id = parse_link(video.name).id
        cookies = Cookies.from_settings(settings.download, paths.root)
        with Fetcher(params.download, settings.download, cookies) as fetcher:
            video.path = fetcher.fetch(video.name, work_dir, video.video_id).path
    except (LinkError, FetchError) as exc:
        video.status, video.reason = Status.ERROR.value, f"cannot download ({exc})"


def frames_entries(videos: list[Video], cache: VideoCache, params: Params, settings: Settings) -> dict[int, FramesFile]:
    """Each readable video's frames, from the cache or decoded (and cached), as the frames stage keys them;
    a video that cannot be decoded gets its status and reason."""
    decoder = decoder_fingerprint()
    recipe = frames_recipe(params.frames_count, params.frames, decoder)
    found: dict[int, FramesFile] = {}
    for index, video in enumerate(tqdm(videos, desc="predict: frames", unit="video", disable=len(videos) < 2)):
        if video.path is None:
            continue
        digest = sha256_file(video.path)
        # A file the pipeline stored under its id keeps that id (random_frame picks the same frame); any other
        # file's id is a digest of its bytes, as the folder source makes it.
        video.video_id = video.video_id or (video.path.stem if is_safe_id(video.path.stem) else digest[:16])
        key = entry_key({**recipe, "video": digest})
        entry = cache.get(FRAMES_KIND, key)
        if entry is None:  # as the frames stage does: a final verdict is cached, an `error` one too
            verdict, frames, final = decode_video(video.path, params.frames_count, params.frames, 1, settings.frames)
            entry = cache.put(FRAMES_KIND, key, verdict, frames, ".npz", decoder) if final else Entry(verdict, None)
        video.status, video.reason = str(entry.record["status"]), entry.record["reason"]
        if video.status not in USABLE_FRAMES or entry.payload is None:
            continue
        found[index] = FramesFile(video.video_id, entry.payload, int(entry.record["n_frames"]), "")
    return found


def embed_entries(
    videos: list[Video],
    found: dict[int, FramesFile],
    cache: VideoCache,
    paths: ProjectPaths,
    params: Params,
    settings: Settings,
) -> None:
    """Each video's frame embeddings, from the cache or embedded (and cached), as the embed stage keys them."""
    identity = encoder_identity(params.embed, paths.root)
    identity.pop("note")
    device = checked_device(settings.embed.device, params.embed.precision)
    runtime = encoder_runtime(device, params.embed.precision)
    recipe = embed_recipe(identity, runtime)
    keyed = {
        i: FramesFile(f.video_id, f.path, f.n_frames, entry_key({**recipe, "frames": sha256_file(f.path)}))
        for i, f in found.items()
    }
    entries = {f.key: entry for f in keyed.values() if (entry := cache.get(EMBED_KIND, f.key)) is not None}
    todo = list({f.key: f for f in keyed.values() if f.key not in entries}.values())
    if todo:
        encoder = open_encoder(params.embed, settings.embed.device, paths.root)
        runner = lambda batches: embed_here(batches, BatchEmbedder(encoder))  # noqa: E731
        entries |= embed_missing(todo, runner, cache, runtime=runtime)
    for index, frames in keyed.items():
        payload = entries[frames.key].payload
        assert payload is not None
        videos[index].embeddings = np.load(payload)


def probabilities(saved: SavedModel, variant: str, paths: ProjectPaths, video: Video) -> list[float]:
    """The model's probability of each of its categories for one video's embeddings."""
    assert video.embeddings is not None
    spec = variant_spec(variant, paths.variants)
    embeddings = video.embeddings
    frames, mask = variant_inputs(spec, embeddings[None], np.ones((1, len(embeddings)), dtype=bool), [video.video_id])
    return predict_proba(saved.model, frames, mask)[0].tolist()


def checked_model(paths: ProjectPaths, variant: str, params: Params, model: Path | None = None) -> SavedModel:
    """The saved model, refused when its embeddings were made with other settings than params.yaml's now.
    `model`: another file than models/<variant>.pt, such as one `dvc artifacts get` fetched from a commit or
    experiment."""
    variant_spec(variant, paths.variants)
    if model is not None and not model.is_file():
        raise PipelineError(f"{model}: no such model file (--model)")
    model_file = model or paths.model_file(variant)
    saved = load_model(model_file, variant)
    identity_now = encoder_identity(params.embed, paths.root)  # files by content: a replaced one differs
    now = {**encoder_record(params.embed, identity_now), **frames_made_with(params.frames_count, params.frames)}
    check_same_settings(
        saved.encoder,
        now,
        EMBEDDING_KEYS,
        str(model_file),
        "trained on embeddings made with",
        "params.yaml now",
        "run dvc repro first",
    )
    return saved


def predict_videos(
    paths: ProjectPaths,
    sources: list[str],
    variant: str,
    params: Params,
    settings: Settings,
    out: str | None = None,
    model: Path | None = None,
) -> str:
    """Classify every video; one video without `out`: print its category and probabilities (an unreadable one is
    an error), else a table (and `out`, a CSV). Returns the summary line. `model`: as checked_model's."""
    saved = checked_model(paths, variant, params, model)
    videos = expand(sources)
    single = len(videos) == 1 and out is None
    with tempfile.TemporaryDirectory(prefix="predict-") as tmp:
        cache_settings = settings.cache
        cache = open_cache(paths.root, cache_settings.dir, cache_settings.max_gb, cache_settings.enabled, Path(tmp))
        for video in videos:
            if video.path is None:
                fetch(video, Path(tmp), paths, params, settings)
        found = frames_entries(videos, cache, params, settings)
        if found:
            embed_entries(videos, found, cache, paths, params, settings)
        cache.evict()
    pretrained = params.embed.pretrained != "none"
    rows = [prediction_row(saved, variant, paths, video) for video in videos]
    if single:
        return print_one(videos[0], rows[0], saved, pretrained, variant)
    columns = [*PREDICT_OUT_COLUMNS, *(f"p_{category}" for category in saved.categories)]
    if out is not None:
        write_table(Path(out), columns, rows)
    shown = [
        [
            shorten(r["path"], 50),
            r["status"],
            r["predicted"] or shorten(r["reason"], 50),
            r.get(f"p_{r['predicted']}", ""),
        ]
        for r in rows
    ]
    print(
        tabulate(
            shown,
            headers=["video", "status", "predicted (or why not)", "probability"],
            tablefmt="simple",
            disable_numparse=True,
        )
    )
    if not pretrained:
        print(UNTRAINED_NOTE)
    classified = sum(bool(row["predicted"]) for row in rows)
    where = f" -> {out}" if out is not None else ""
    return f"{classified} of {len(rows)} videos classified ({variant}){where}"


def prediction_row(saved: SavedModel, variant: str, paths: ProjectPaths, video: Video) -> dict[str, Any]:
    row = {"path": video.name, "status": video.status, "reason": video.reason, "predicted": "", "variant": variant}
    if video.embeddings is None:
        return row
    ranked = probabilities(saved, variant, paths, video)
    row["predicted"] = saved.categories[int(np.argmax(ranked))]
    return row | {f"p_{category}": f"{p:.4f}" for category, p in zip(saved.categories, ranked, strict=True)}


def print_one(video: Video, row: dict[str, Any], saved: SavedModel, pretrained: bool, variant: str) -> str:
    """One video's answer: the category, then every category's probability, highest first."""
    if video.embeddings is None:  # not fetched (the reason says why), or not decodable
        why = video.reason if video.path is None else f"unreadable video ({video.reason})"
        raise PipelineError(f"{video.name}: {why}")
    ranked = sorted(((c, float(row[f"p_{c}"])) for c in saved.categories), key=lambda pair: -pair[1])
    print(f"category: {row['predicted']}")
    for category, probability in ranked:
        print(f"  {category:<20} {probability:.4f}")
    if not pretrained:
        print(UNTRAINED_NOTE)
    return f"{video.name}: {row['predicted']} ({variant}, {len(video.embeddings)} frames)"
