"""The frames step: `frames_count` evenly spaced frames of every downloaded video -> data/frames/<id>.npz and
data/frames.csv, with data/frames/settings.json recording what made them (params and the decoder fingerprint).

Cost follows the change: each video's result (its frames file, or its `error` row) is kept in the per-video
cache (core.cache) under a key made of the video's bytes, the frames params, this folder's code and the decoder
fingerprint (PyAV, FFmpeg, Pillow and libjpeg versions: fingerprint.py), so a rerun
decodes only videos it has not seen with these settings, and a killed run resumes from the videos it finished.
data/frames/<id>.npz is a hard link to the cache entry where the file system allows: the bytes are stored once.
One bad video never stops the step: it becomes an `error` row with its reason.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from clipvideo.config.schema import CacheSettings, EngineSettings, FramesParams, FramesSettings
from clipvideo.core.cache import Entry, code_digest, entry_key, open_cache, sha256_files
from clipvideo.core.contracts import (
    FRAMES_COLUMNS,
    FRAMES_DECODER_KEY,
    USABLE_FRAMES,
    VIDEO_STATUSES,
    VIDEO_SUFFIXES,
    VIDEOS_COLUMNS,
    Status,
)
from clipvideo.core.errors import DiskFullError, PipelineError
from clipvideo.core.files import atomic_directory, link_or_copy, write_json_atomic
from clipvideo.core.ids import URL_ID, is_safe_id
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.system import available_cores
from clipvideo.core.tables import TableRow, read_table, write_table
from clipvideo.core.text import plural, shorten
from clipvideo.engines.engine import LocalFile
from clipvideo.engines.factory import open_engine
from clipvideo.video.decode import DecodeTimeout, sample_frames
from clipvideo.video.fingerprint import decoder_fingerprint
from clipvideo.video.probe import VideoError
from clipvideo.video.store import pack_frames

# The code the frames depend on: dvc.yaml lists this folder as a dep of the frames stage (a test checks), and
# every cache key hashes it, so an edit reruns the stage and never reuses frames of the old code.
FRAMES_CODE = (Path(__file__).parent,)
KIND = "frames"


def video_path(row: TableRow, paths: ProjectPaths) -> Path:
    """The row's video file, checked to be a file inside data/videos/, or a local file read in place (folder
    source, a CSV's relative path), whose id must be a digest of its bytes (checked in frames_keys)."""
    where = f"{paths.videos_table}:{row.line}: id {row['id']!r}"
    if not is_safe_id(row["id"]):
        raise PipelineError(f"{where}: not a manifest id (11-character YouTube id or 16 hex digits)")
    path = (paths.root / row["path"]).resolve()
    videos_dir = paths.videos_dir.resolve()
    in_place = bool(URL_ID.fullmatch(row["id"])) and Path(row["path"]).suffix.lower() in VIDEO_SUFFIXES
    if not row["path"] or path == videos_dir or not (path.is_relative_to(videos_dir) or in_place):
        raise PipelineError(f"{where}: path {row['path']!r} is not a file inside data/videos/")
    if not path.is_file():
        raise PipelineError(f"{where}: {row['path']} does not exist; rerun the download stage")
    return path


def decode_video(
    path: Path, count: int, params: FramesParams, threads: int, settings: FramesSettings
) -> tuple[dict[str, Any], bytes | None, bool]:
    """One video -> its frames.csv verdict (status, reason, n_frames), its frames file's bytes (None for an
    `error`), and whether the verdict is final: a video past frames.video_timeout_s is tried again by the next
    run, so it is not cached. Never raises for a bad video. Runs on the engine: it writes nothing."""
    try:
        frames = sample_frames(
            path,
            count,
            params.size,
            params.mode,
            threads,
            settings,
            params.max_decode_megapixels,
            params.max_decode_megapixels_per_byte,
        )
    except DecodeTimeout as exc:
        return {"status": Status.ERROR, "reason": str(exc), "n_frames": 0}, None, False
    except VideoError as exc:
        return {"status": Status.ERROR, "reason": str(exc), "n_frames": 0}, None, True
    except Exception as exc:  # a decoder failure nobody foresaw must not stop a run over thousands of videos
        if isinstance(exc, PipelineError) or getattr(exc, "errno", None) in DiskFullError.DISK_FULL_ERRNOS:
            raise  # the disk, not the video: the stage stops, finished videos are kept
        reason = f"decoder failure ({type(exc).__name__}: {shorten(' '.join(str(exc).split()), 203)})"
        return {"status": Status.ERROR, "reason": reason, "n_frames": 0}, None, True
    short = frames.is_short
    verdict = {
        "status": Status.SHORT if short else Status.OK,
        "n_frames": len(frames.images),
        "reason": f"{len(frames.images)} of {count} frames decodable" if short else "",
    }
    return verdict, pack_frames(frames), True


@dataclass(frozen=True)
class Source:
    video_id: str
    path: Path
    key: str  # the cache key: this video's bytes with these params and this code


def frames_keys(sources: list[tuple[str, Path]], recipe: dict[str, Any], videos_dir: Path) -> list[Source]:
    """Every video's cache key; hashing reads each video once (threads: hashlib releases the GIL). A video read
    in place (outside `videos_dir`) must have the bytes its id is a digest of."""
    digests = sha256_files([path for _, path in sources], "frames: hashing videos", unit="video")
    for (video_id, path), digest in zip(sources, digests, strict=True):
        if not path.is_relative_to(videos_dir) and digest[: len(video_id)] != video_id:
            raise PipelineError(
                f"{path}: its bytes are not those of id {video_id} (changed since the manifest "
                "listed it?); rerun the pipeline (dvc repro)"
            )
    return [
        Source(video_id, path, entry_key({**recipe, "video": digest}))
        for (video_id, path), digest in zip(sources, digests, strict=True)
    ]


def frames_recipe(frames_count: int, params: FramesParams, decoder: dict[str, Any]) -> dict[str, Any]:
    """Everything but the video that decides a frames cache entry (predict keys its entries the same way)."""
    return {
        "kind": KIND,
        "frames_count": frames_count,
        "size": params.size,
        "mode": params.mode,
        "max_decode_megapixels": params.max_decode_megapixels,
        "max_decode_megapixels_per_byte": params.max_decode_megapixels_per_byte,
        "code": code_digest(FRAMES_CODE),
        "decoder": decoder,
    }


def frames_made_with(frames_count: int, params: FramesParams) -> dict[str, Any]:
    """The FRAMES_SETTINGS_KEYS values of these params: what data/frames/settings.json records, and what predict
    checks a model's embeddings against."""
    return {"frames_count": frames_count, "frames_size": params.size, "frames_mode": params.mode}


def publish(source: Source, entry: Entry, frames_dir: Path) -> dict[str, Any]:
    """The video's frames.csv row; its frames file linked from its cache entry into the frames folder."""
    if entry.payload is not None:
        try:
            link_or_copy(entry.payload, frames_dir / f"{source.video_id}.npz")
        except FileNotFoundError:  # only when another run evicted it meanwhile, from a cache far too small
            raise PipelineError(
                f"{entry.payload}: evicted from the per-video cache while in use (cache.max_gb is "
                "smaller than one run needs); rerun"
            ) from None
    return {"id": source.video_id, **entry.record}


def extract_frames(
    paths: ProjectPaths,
    frames_count: int,
    params: FramesParams,
    settings: FramesSettings,
    engine_settings: EngineSettings,
    cache_settings: CacheSettings,
) -> str:
    """Every `ok` video of data/videos.csv -> data/frames/ and data/frames.csv; returns the summary line."""
    table = read_table(paths.videos_table, VIDEOS_COLUMNS, choices={"status": VIDEO_STATUSES})
    found = [(row["id"], video_path(row, paths)) for row in table if row["status"] == Status.OK]
    cache = open_cache(paths.root, cache_settings.dir, cache_settings.max_gb, cache_settings.enabled, paths.data)
    # The decode budget decides which videos are refused, so it is part of the key; so are the libraries that
    # make the bytes.
    decoder = decoder_fingerprint()
    recipe = frames_recipe(frames_count, params, decoder)
    with open_engine(engine_settings, settings.workers) as engine:  # first: a cluster that does not answer says so
        sources = frames_keys(found, recipe, paths.videos_dir.resolve())
        entries = {key: cache.get(KIND, key) for key in dict.fromkeys(source.key for source in sources)}
        todo = list({source.key: source for source in sources if entries[source.key] is None}.values())  # one a key
        # local: split long videos on spare cores; a Ray task holds one CPU
        threads = max(1, available_cores() // settings.workers) if engine.local else 1
        calls = [(LocalFile(source.path), frames_count, params, threads, settings) for source in todo]
        with tqdm(total=len(sources), initial=len(sources) - len(todo), desc="frames", unit="video") as bar:
            # a Ray worker with another decoder fingerprint refuses: its bytes would not be these
            for done, (verdict, frames, final) in engine.map(decode_video, calls, decoder_fingerprint):
                key = todo[done].key
                made = cache.put(KIND, key, verdict, frames, ".npz", decoder) if final else Entry(verdict, None)
                entries[key] = made
                bar.update()
        where = engine.describe()
    with atomic_directory(paths.frames_dir) as frames_dir:
        rows = [publish(source, entries[source.key], frames_dir) for source in sources]
        # What made these frames, with them: embed records it without reading (undeclared) params.
        made_with = {**frames_made_with(frames_count, params), FRAMES_DECODER_KEY: decoder}
        write_json_atomic(frames_dir / paths.frames_settings.name, made_with)
    write_table(paths.frames_table, FRAMES_COLUMNS, rows)
    cache.evict()
    counts = Counter(row["status"] for row in rows)
    for row in rows:
        if row["status"] == Status.ERROR:
            print(f"  error {row['id']}: {row['reason']}")
    usable = sum(counts[status] for status in USABLE_FRAMES)
    if usable < settings.min_videos:
        raise PipelineError(
            f"only {plural(usable, 'video')} gave frames, fewer than frames.min_videos={settings.min_videos} "
            f"(settings.yaml); see {paths.frames_table}"
        )
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    summary += f"; {sum(int(row['n_frames']) for row in rows)} frames at {params.size}px"
    summary += f"; {plural(len(todo), 'video')} decoded, {len(sources) - len(todo)} reused from the cache"
    return f"{summary}; {where}"
