"""download: fetch every valid manifest row -> data/videos/ and data/videos.csv."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from clipvideo.cli import plural, stage_main
from clipvideo.contracts import MANIFEST_COLUMNS, VIDEOS_COLUMNS
from clipvideo.errors import PipelineError
from clipvideo.fetch import FetchError, copy_local, fetch_with_ytdlp, is_remote, local_source
from clipvideo.files import read_table, write_table
from clipvideo.manifest import is_safe_id
from clipvideo.paths import ProjectPaths
from clipvideo.video import VideoError, video_duration

SECTIONS = ("download",)


def download_row(row: dict[str, str], paths: ProjectPaths, params: dict[str, Any]) -> dict[str, Any]:
    """One manifest row -> one videos.csv row; never raises for a bad video."""
    result: dict[str, Any] = {"id": row["id"], "category": row["category"], "path": "", "bytes": "", "duration_s": ""}
    if row["status"] != "valid":
        return {**result, "status": "invalid", "reason": row["reason"] or "invalid in manifest"}
    if not is_safe_id(row["id"]):
        return {**result, "status": "invalid", "reason": f"unsafe id {row['id'][:40]!r}"}
    try:
        if is_remote(row["url"]):
            fetched = fetch_with_ytdlp(row["url"], paths.videos_dir, row["id"], params["max_height"])
        else:
            fetched = copy_local(local_source(row["url"], paths.root, paths.data), paths.videos_dir, row["id"])
    except FetchError as exc:
        return {**result, "status": exc.status, "reason": exc.reason}
    try:
        duration = f"{video_duration(fetched.path):.3f}"
    except VideoError:
        duration = ""  # the frames stage records why it cannot decode it
    return {
        **result,
        "status": "ok",
        "reason": "",
        "path": fetched.path.relative_to(paths.root).as_posix(),
        "bytes": fetched.bytes,
        "duration_s": duration,
    }


def run(paths: ProjectPaths, params: dict[str, Any], _: argparse.Namespace) -> str:
    settings = params["download"]
    manifest = read_table(paths.manifest, MANIFEST_COLUMNS)
    paths.videos_dir.mkdir(parents=True, exist_ok=True)
    rows = [download_row(row, paths, settings) for row in tqdm(manifest, desc="download", unit="video")]
    write_table(paths.videos_table, VIDEOS_COLUMNS, rows)
    counts = Counter(row["status"] for row in rows)
    ok = counts.get("ok", 0)
    if ok < settings["min_videos"]:
        raise PipelineError(
            f"only {plural(ok, 'video')} downloaded, fewer than download.min_videos={settings['min_videos']}; "
            f"see {paths.videos_table} for the reasons"
        )
    total_bytes = sum(int(row["bytes"] or 0) for row in rows)
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + f", {total_bytes / 1e6:.1f} MB"


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("download", __doc__, SECTIONS, run, argv)


if __name__ == "__main__":
    sys.exit(main())
