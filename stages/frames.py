"""frames: sample `frames_count` evenly spaced frames per video -> data/frames/<id>.npz, data/frames.csv.

data/frames/settings.json records frames_count, frames.size and frames.mode with the frames they made.

Resume: each finished video is first kept in data/frames-resume/<key>/ (not a DVC out, so `dvc
repro` does not delete it before a rerun), keyed by everything that changes the frames (the
params and this stage's code) and by the video file's size and modification time. A run killed
half-way reuses what it finished; a successful run removes the folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from clipvideo import video
from clipvideo.cli import plural, stage_main
from clipvideo.contracts import FRAMES_COLUMNS, FRAMES_SETTINGS_KEYS, VIDEOS_COLUMNS
from clipvideo.engine import available_cores, choose_engine, open_engine
from clipvideo.errors import PipelineError
from clipvideo.files import (
    TableRow,
    link_or_copy,
    prepare_resume_dir,
    read_table,
    resume_key,
    write_table,
    write_text_atomic,
)
from clipvideo.manifest import is_safe_id
from clipvideo.params import dotted
from clipvideo.paths import ProjectPaths
from clipvideo.video import VideoError, sample_frames, save_frames

SECTIONS = ("frames_count", "frames")
VIDEO_STATUSES = ("ok", "invalid", "unavailable", "failed")
# The frames depend on these params and on the code that decodes (the same deps dvc.yaml declares).
OUTPUT_PARAMS = ("size", "mode")
DECODING_CODE = (Path(video.__file__), Path(__file__))


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


def resumed_row(video_id: str, path: Path, resume_dir: Path) -> dict[str, Any] | None:
    """The frames.csv row a killed run finished for this very video file, if any."""
    record = resume_dir / f"{video_id}.json"
    if not record.is_file():
        return None
    try:
        saved = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if saved.get("video") != video_identity(path):
        return None
    row = saved.get("row", {})
    if row.get("status") != "error" and not (resume_dir / f"{video_id}.npz").is_file():
        return None
    return row


def decode_video(
    video_id: str, path: Path, resume_dir: Path, count: int, size: int, mode: str, threads: int
) -> dict[str, Any]:
    """One video -> its frames.csv row, its frames kept in `resume_dir`; never raises for a bad video."""
    try:
        frames = sample_frames(path, count, size, mode, threads)
    except VideoError as exc:
        row = {"id": video_id, "status": "error", "reason": str(exc), "n_frames": 0}
    except Exception as exc:  # a decoder failure nobody foresaw must not stop a run over thousands of videos
        reason = f"decoder failure ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
        row = {"id": video_id, "status": "error", "reason": reason, "n_frames": 0}
    else:
        save_frames(resume_dir / f"{video_id}.npz", frames)
        short = frames.is_short
        reason = f"{len(frames.images)} of {count} frames decodable" if short else ""
        row = {"id": video_id, "status": "short" if short else "ok", "reason": reason, "n_frames": len(frames.images)}
    record = {"video": video_identity(path), "row": row}
    write_text_atomic(resume_dir / f"{video_id}.json", json.dumps(record))
    return row


def run(paths: ProjectPaths, params: dict[str, Any], settings: dict[str, Any], _: argparse.Namespace) -> str:
    frames = params["frames"]
    workers, min_videos = settings["frames"]["workers"], settings["frames"]["min_videos"]
    count = params["frames_count"]
    table = read_table(paths.videos_table, VIDEOS_COLUMNS, choices={"status": VIDEO_STATUSES})
    sources = [(row["id"], video_path(row, paths)) for row in table if row["status"] == "ok"]
    # data/frames holds exactly this run's videos; finished work survives in the resume folder.
    shutil.rmtree(paths.frames_dir, ignore_errors=True)
    paths.frames_dir.mkdir(parents=True)
    key = resume_key({"frames_count": count, **{name: frames[name] for name in OUTPUT_PARAMS}}, DECODING_CODE)
    resume_dir = prepare_resume_dir(paths.frames_resume_dir, key).absolute()  # absolute: Ray workers write there

    rows: list[dict[str, Any]] = [{}] * len(sources)

    def publish(index: int, row: dict[str, Any]) -> None:
        """Keep the row; link a finished video's frames from the resume folder into data/frames."""
        rows[index] = row
        if row["status"] != "error":
            link_or_copy(resume_dir / f"{sources[index][0]}.npz", paths.frames_dir / f"{sources[index][0]}.npz")

    todo = []
    for index, (video_id, path) in enumerate(sources):
        row = resumed_row(video_id, path, resume_dir)
        if row is None:
            todo.append(index)
        else:
            publish(index, row)
    resumed = len(sources) - len(todo)
    with contextlib.closing(open_engine(choose_engine(**settings["engine"]), workers)) as engine:
        # local: split long videos on spare cores; a Ray task holds one CPU
        threads = max(1, available_cores() // workers) if engine.local else 1
        calls = [(*sources[i], resume_dir, count, frames["size"], frames["mode"], threads) for i in todo]
        with tqdm(total=len(sources), initial=resumed, desc="frames", unit="video") as bar:
            for done, row in engine.map(decode_video, calls):
                publish(todo[done], row)
                bar.update()
        where = engine.describe()
    write_table(paths.frames_table, FRAMES_COLUMNS, rows)
    # What made these frames, with them: embed records it without reading (undeclared) params.
    settings_made = {key: dotted(params, source) for key, source in FRAMES_SETTINGS_KEYS.items()}
    write_text_atomic(paths.frames_settings, json.dumps(settings_made, indent=2) + "\n")
    counts = Counter(row["status"] for row in rows)
    for row in rows:
        if row["status"] == "error":
            print(f"  error {row['id']}: {row['reason']}")
    usable = counts.get("ok", 0) + counts.get("short", 0)
    if usable < min_videos:
        raise PipelineError(
            f"only {plural(usable, 'video')} gave frames, fewer than frames.min_videos={min_videos} (settings.yaml); "
            f"see {paths.frames_table}"
        )
    shutil.rmtree(paths.frames_resume_dir)
    frames_total = sum(int(row["n_frames"]) for row in rows)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    summary += f"; {frames_total} frames at {frames['size']}px"
    summary += f"; {resumed} resumed from an interrupted run" if resumed else ""
    return f"{summary}; {where}"


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("frames", __doc__, SECTIONS, run, argv)


if __name__ == "__main__":
    sys.exit(main())
