"""frames: sample `frames_count` evenly spaced frames per video -> data/frames/<id>.npz, data/frames.csv."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from clipvideo.cli import plural, stage_main
from clipvideo.contracts import FRAMES_COLUMNS, VIDEOS_COLUMNS
from clipvideo.errors import PipelineError
from clipvideo.files import read_table, remove_stale_temporaries, write_table
from clipvideo.manifest import is_safe_id
from clipvideo.paths import ProjectPaths
from clipvideo.video import VideoError, sample_frames, save_frames

SECTIONS = ("frames_count", "frames")


def video_path(row: dict[str, str], paths: ProjectPaths) -> Path:
    """The row's video file, checked to be a file inside data/videos/."""
    path = (paths.root / row["path"]).resolve()
    if not is_safe_id(row["id"]) or not path.is_relative_to(paths.videos_dir.resolve()):
        raise PipelineError(f"{paths.videos_table}: row {row['id']!r}: path {row['path']!r} is not inside data/videos/")
    if not path.is_file():
        raise PipelineError(
            f"{paths.videos_table}: row {row['id']!r}: {row['path']} does not exist; rerun the download stage"
        )
    return path


def frames_for_video(video_id: str, path: Path, out_dir: Path, count: int, size: int, mode: str) -> dict[str, Any]:
    try:
        frames = sample_frames(path, count, size, mode)
        save_frames(out_dir / f"{video_id}.npz", frames)
    except VideoError as exc:
        return {"id": video_id, "status": "error", "reason": str(exc), "n_frames": 0}
    status = "short" if frames.is_short else "ok"
    reason = f"{len(frames.images)} of {count} frames decodable" if frames.is_short else ""
    return {"id": video_id, "status": status, "reason": reason, "n_frames": len(frames.images)}


def run(paths: ProjectPaths, params: dict[str, Any], _: argparse.Namespace) -> str:
    settings = params["frames"]
    count = params["frames_count"]
    videos = [row for row in read_table(paths.videos_table, VIDEOS_COLUMNS) if row["status"] == "ok"]
    sources = [(row["id"], video_path(row, paths)) for row in videos]
    paths.frames_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(paths.frames_dir)
    with ThreadPoolExecutor(settings["workers"]) as pool:
        jobs = pool.map(
            lambda item: frames_for_video(*item, paths.frames_dir, count, settings["size"], settings["mode"]),
            sources,
        )
        rows = list(tqdm(jobs, total=len(sources), desc="frames", unit="video"))
    write_table(paths.frames_table, FRAMES_COLUMNS, rows)
    counts = Counter(row["status"] for row in rows)
    for row in rows:
        if row["status"] == "error":
            print(f"  error {row['id']}: {row['reason']}")
    usable = counts.get("ok", 0) + counts.get("short", 0)
    if usable < settings["min_videos"]:
        raise PipelineError(
            f"only {plural(usable, 'video')} gave frames, fewer than frames.min_videos={settings['min_videos']}; "
            f"see {paths.frames_table}"
        )
    frames_total = sum(int(row["n_frames"]) for row in rows)
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f"; {frames_total} frames at {settings['size']}px"


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("frames", __doc__, SECTIONS, run, argv)


if __name__ == "__main__":
    sys.exit(main())
