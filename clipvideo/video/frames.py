"""The frames step: `frames_count` evenly spaced frames of every downloaded video -> data/frames/<id>.npz and
data/frames.csv, with data/frames/settings.json recording what made them.

Resume: each finished video is first kept in data/frames-resume/ (not a DVC out, so `dvc repro` does not
delete it before a rerun), valid for the recipe that made it (the params and this folder's code) and for the
video file's size and modification time. A run killed half-way reuses what it finished; a run that
completes removes the folder. One bad video never stops the step: it becomes an `error` row with its reason.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from clipvideo.config.schema import EngineSettings, FramesParams, FramesSettings
from clipvideo.core.checkpoint import Checkpoint
from clipvideo.core.contracts import FRAMES_COLUMNS, USABLE_FRAMES, VIDEO_STATUSES, VIDEOS_COLUMNS, Status
from clipvideo.core.errors import DiskFullError, PipelineError
from clipvideo.core.files import atomic_directory, link_or_copy, write_json_atomic, write_text_atomic
from clipvideo.core.ids import is_safe_id
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.system import available_cores
from clipvideo.core.tables import TableRow, read_table, write_table
from clipvideo.core.text import plural, shorten
from clipvideo.engines.engine import open_engine
from clipvideo.video.decode import DecodeTimeout, sample_frames
from clipvideo.video.probe import VideoError
from clipvideo.video.store import SampledFrames, save_frames

# The code the frames depend on: dvc.yaml lists this folder as a dep of the frames stage (a test checks), and
# the resume recipe hashes it, so an edit reruns the stage and never reuses frames of the old code.
FRAMES_CODE = (Path(__file__).parent,)


def video_path(row: TableRow, paths: ProjectPaths) -> Path:
    """The row's video file, checked to be a file inside data/videos/."""
    where = f"{paths.videos_table}:{row.line}: id {row['id']!r}"
    if not is_safe_id(row["id"]):
        raise PipelineError(f"{where}: not a manifest id (11-character YouTube id or 16 hex digits)")
    path = (paths.root / row["path"]).resolve()
    videos_dir = paths.videos_dir.resolve()
    if not row["path"] or path == videos_dir or not path.is_relative_to(videos_dir):
        raise PipelineError(f"{where}: path {row['path']!r} is not a file inside data/videos/")
    if not path.is_file():
        raise PipelineError(f"{where}: {row['path']} does not exist; rerun the download stage")
    return path


def video_identity(path: Path) -> dict[str, int]:
    """Size and modification time: a re-downloaded or replaced video never matches an old entry."""
    stat = path.stat()
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def resumed_row(video_id: str, path: Path, checkpoint: Checkpoint) -> dict[str, Any] | None:
    """The frames.csv row a killed run finished for this very video file, if any."""
    record = checkpoint.path(f"{video_id}.json")
    if not record.is_file():
        return None
    try:
        saved = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if saved.get("video") != video_identity(path):
        return None
    row = saved.get("row", {})
    if row.get("status") != Status.ERROR and not checkpoint.path(f"{video_id}.npz").is_file():
        return None
    return row


def store_frames(
    video: Path, dest: Path, count: int, params: FramesParams, threads: int, settings: FramesSettings
) -> SampledFrames:
    """Sample the video's frames and write its frames file: what the frames step and predict both run."""
    frames = sample_frames(video, count, params.size, params.mode, threads, settings)
    save_frames(dest, frames)
    return frames


def decode_video(
    video_id: str,
    path: Path,
    resume_dir: Path,
    count: int,
    params: FramesParams,
    threads: int,
    settings: FramesSettings,
) -> dict[str, Any]:
    """One video -> its frames.csv row, its frames kept in `resume_dir`; never raises for a bad video.
    A video past frames.video_timeout_s keeps no resume record: a resumed run tries it again."""
    try:
        frames = store_frames(path, resume_dir / f"{video_id}.npz", count, params, threads, settings)
    except DecodeTimeout as exc:
        return {"id": video_id, "status": Status.ERROR, "reason": str(exc), "n_frames": 0}
    except VideoError as exc:
        row = {"id": video_id, "status": Status.ERROR, "reason": str(exc), "n_frames": 0}
    except Exception as exc:  # a decoder failure nobody foresaw must not stop a run over thousands of videos
        if isinstance(exc, PipelineError) or getattr(exc, "errno", None) in DiskFullError.DISK_FULL_ERRNOS:
            raise  # the disk, not the video: the stage stops, finished videos are kept
        reason = f"decoder failure ({type(exc).__name__}: {shorten(' '.join(str(exc).split()), 203)})"
        row = {"id": video_id, "status": Status.ERROR, "reason": reason, "n_frames": 0}
    else:
        short = frames.is_short
        reason = f"{len(frames.images)} of {count} frames decodable" if short else ""
        status = Status.SHORT if short else Status.OK
        row = {"id": video_id, "status": status, "reason": reason, "n_frames": len(frames.images)}
    record = {"video": video_identity(path), "row": row}
    write_text_atomic(resume_dir / f"{video_id}.json", json.dumps(record))
    return row


def extract_frames(
    paths: ProjectPaths,
    frames_count: int,
    params: FramesParams,
    settings: FramesSettings,
    engine_settings: EngineSettings,
) -> str:
    """Every `ok` video of data/videos.csv -> data/frames/ and data/frames.csv; returns the summary line."""
    table = read_table(paths.videos_table, VIDEOS_COLUMNS, choices={"status": VIDEO_STATUSES})
    sources = [(row["id"], video_path(row, paths)) for row in table if row["status"] == Status.OK]
    # The budget decides which videos are refused, so resumed rows count only under the same budget.
    recipe = {"frames_count": frames_count, "size": params.size, "mode": params.mode,
              "max_decode_megapixels": settings.max_decode_megapixels}  # fmt: skip
    checkpoint = Checkpoint(paths.frames_resume_dir, recipe, FRAMES_CODE)
    checkpoint.open()
    resume_dir = checkpoint.folder.absolute()  # absolute: Ray workers write there
    rows: list[dict[str, Any]] = [{}] * len(sources)
    with atomic_directory(paths.frames_dir) as frames_dir:

        def publish(index: int, row: dict[str, Any]) -> None:
            """Keep the row; link a finished video's frames from the resume folder into the frames folder."""
            rows[index] = row
            if row["status"] != Status.ERROR:
                name = f"{sources[index][0]}.npz"
                link_or_copy(resume_dir / name, frames_dir / name)

        todo = []
        for index, (video_id, path) in enumerate(sources):
            row = resumed_row(video_id, path, checkpoint)
            if row is None:
                todo.append(index)
            else:
                publish(index, row)
        resumed = len(sources) - len(todo)
        with open_engine(engine_settings, settings.workers) as engine:
            # local: split long videos on spare cores; a Ray task holds one CPU
            threads = max(1, available_cores() // settings.workers) if engine.local else 1
            calls = [(*sources[i], resume_dir, frames_count, params, threads, settings) for i in todo]
            with tqdm(total=len(sources), initial=resumed, desc="frames", unit="video") as bar:
                for done, row in engine.map(decode_video, calls):
                    publish(todo[done], row)
                    bar.update()
            where = engine.describe()
        # What made these frames, with them: embed records it without reading (undeclared) params.
        made_with = {"frames_count": frames_count, "frames_size": params.size, "frames_mode": params.mode}
        write_json_atomic(frames_dir / paths.frames_settings.name, made_with)
    write_table(paths.frames_table, FRAMES_COLUMNS, rows)
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
    checkpoint.clear()
    frames_total = sum(int(row["n_frames"]) for row in rows)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    summary += f"; {frames_total} frames at {params.size}px"
    summary += f"; {resumed} resumed from an interrupted run" if resumed else ""
    return f"{summary}; {where}"
