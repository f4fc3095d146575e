"""download: fetch every valid manifest row -> data/videos/ and data/videos.csv.

Resumable (both outputs are `persist: true` in dvc.yaml): a video whose complete file is already in
data/videos/ is never fetched again, `failed` rows are retried, `unavailable` ones are skipped unless
settings.yaml's download.retry_unavailable is set. data/videos.csv is checkpointed while the stage runs, so a killed
run loses at most the last few verdicts, never a finished video. When the first attempts all fail before
reaching any host, the stage stops at once: the network is down, and every row not tried stays `failed`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from tqdm import tqdm

from clipvideo.cli import plural, stage_main
from clipvideo.contracts import MANIFEST_COLUMNS, VIDEOS_COLUMNS
from clipvideo.errors import PipelineError
from clipvideo.fetch import (
    VIDEO_SUFFIXES,
    Fetched,
    Fetcher,
    FetchError,
    FetchSettings,
    FetchStopped,
    check_cookies,
    copy_local,
    existing_video,
    is_remote,
    local_source,
    reason_text,
    remote_target,
)
from clipvideo.files import read_table, remove_stale_temporaries, write_table, write_text_atomic
from clipvideo.manifest import is_safe_id
from clipvideo.paths import ProjectPaths
from clipvideo.video import VideoError, video_duration

SECTIONS = ("download",)
CHECKPOINT_S = 10.0
# Written into data/videos/: the params that shape the downloaded files; when they change, files are fetched anew.
FORMAT_FILE = ".format.json"
STATUSES = ("ok", "unavailable", "failed", "invalid")
INTERRUPTED = "not attempted yet (the run was interrupted)"
NETWORK_DOWN = "not attempted yet (the network was unreachable)"


def empty_row(row: dict[str, str]) -> dict[str, Any]:
    return {"id": row["id"], "category": row["category"], "path": "", "bytes": "", "duration_s": ""}


def ok_row(row: dict[str, str], fetched: Fetched, root: Path) -> dict[str, Any]:
    try:
        duration = f"{video_duration(fetched.path):.3f}"
    except VideoError:
        duration = ""  # the frames stage records why it cannot decode it
    return {
        **empty_row(row),
        "status": "ok",
        "reason": "",
        "path": fetched.path.relative_to(root).as_posix(),
        "bytes": fetched.bytes,
        "duration_s": duration,
    }


def fetch_row(row: dict[str, str], paths: ProjectPaths, fetcher: Fetcher) -> dict:
    """One remote video -> its videos.csv row; never raises for a bad video, so one cannot stop the rest
    (only FetchStopped: the fetcher was stopped and this video got no verdict)."""
    try:
        return ok_row(row, fetcher.fetch(row["url"], paths.videos_dir, row["id"]), paths.root)
    except FetchError as exc:
        return {**empty_row(row), "status": exc.status, "reason": exc.reason}
    except FetchStopped:
        raise
    except Exception as exc:  # an unforeseen error: transient until shown otherwise
        return {**empty_row(row), "status": "failed", "reason": reason_text(f"{type(exc).__name__}: {exc}")}


def previous_rows(paths: ProjectPaths) -> dict[str, dict[str, str]]:
    """The last run's verdicts (a checkpoint after a kill), or none when there is no usable table."""
    if not paths.videos_table.is_file():
        return {}
    try:
        return {row["id"]: row for row in read_table(paths.videos_table, VIDEOS_COLUMNS)}
    except PipelineError as exc:
        print(f"download: ignoring the previous {paths.videos_table}: {exc}", file=sys.stderr)
        return {}


def reset_if_format_changed(paths: ProjectPaths, settings: FetchSettings) -> bool:
    """Delete the videos when max_height or max_filesize_mb changed since they were fetched; True if so."""
    marker = paths.videos_dir / FORMAT_FILE
    wanted = json.dumps({"max_height": settings.max_height, "max_filesize_mb": settings.max_filesize_mb})
    changed = marker.is_file() and marker.read_text(encoding="utf-8") != wanted
    if changed:
        for path in paths.videos_dir.iterdir():
            if path.is_file() and path.suffix in VIDEO_SUFFIXES:
                path.unlink()
    write_text_atomic(marker, wanted)
    return changed


def is_video_file(path: Path) -> bool:
    """A file this stage stores: `<validated id><video suffix>` (not the format marker, not a temporary)."""
    return path.suffix in VIDEO_SUFFIXES and is_safe_id(path.stem)


def prune(paths: ProjectPaths, wanted_ids: set[str]) -> tuple[int, int]:
    """Remove what the manifest no longer asks for, so the persisted folder mirrors it: (videos of rows that
    left the manifest, other visible files). Hidden files (the format marker, temporaries) are not touched."""
    videos = others = 0
    for path in paths.videos_dir.iterdir():
        if not path.is_file() or path.name.startswith(".") or (is_video_file(path) and path.stem in wanted_ids):
            continue
        path.unlink()
        if is_video_file(path):
            videos += 1
        else:
            others += 1
    return videos, others


def checkpoint(
    paths: ProjectPaths,
    manifest: list[dict],
    done: dict[str, dict],
    previous: dict[str, dict],
    not_tried: str = INTERRUPTED,
) -> None:
    """videos.csv in manifest order; rows not reached yet keep their last verdict, or say they were not tried."""
    rows = []
    for row in manifest:
        if row["id"] in done:
            rows.append(done[row["id"]])
        elif row["id"] in previous and previous[row["id"]]["status"] != "ok":
            rows.append(previous[row["id"]])
        else:
            rows.append({**empty_row(row), "status": "failed", "reason": not_tried})
    write_table(paths.videos_table, VIDEOS_COLUMNS, rows)


def summary_table(rows: list[dict[str, Any]]) -> str:
    """ok / unavailable / failed / invalid and megabytes per category, then the total."""
    counts: Counter[tuple[str, str]] = Counter()
    megabytes: Counter[str] = Counter()
    for row in rows:
        for category in (row["category"] or "(empty)", "total"):
            counts[(category, row["status"])] += 1
            megabytes[category] += int(row["bytes"] or 0) / 1e6
    categories = [*sorted({category for category, _ in counts} - {"total"}), "total"]
    lines = [f"  {'category':<14}" + "".join(f"{status:>13}" for status in STATUSES) + f"{'MB':>10}"]
    for category in categories:
        cells = "".join(f"{counts[(category, status)]:>13}" for status in STATUSES)
        lines.append(f"  {category[:13]:<14}{cells}{megabytes[category]:>10.1f}")
    return "\n".join(lines)


def run(paths: ProjectPaths, params: dict[str, Any], settings: dict[str, Any], _: argparse.Namespace) -> str:
    download = settings["download"]
    fetch_settings = FetchSettings.from_params({**params["download"], **download}, paths.root)
    manifest = read_table(paths.manifest, MANIFEST_COLUMNS)
    paths.videos_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(paths.videos_dir)
    previous = {} if reset_if_format_changed(paths, fetch_settings) else previous_rows(paths)
    wanted = {row["id"] for row in manifest if row["status"] == "valid" and is_safe_id(row["id"])}
    removed, strays = prune(paths, wanted)

    done: dict[str, dict[str, Any]] = {}
    to_fetch: list[dict[str, str]] = []
    reused = skipped = 0
    for row in manifest:
        video_id = row["id"]
        try:
            if row["status"] != "valid":
                raise FetchError("invalid", row["reason"] or "invalid in the manifest")
            if not is_safe_id(video_id):
                raise FetchError("invalid", f"unsafe id {video_id[:40]!r}")
            if not is_remote(row["url"]):
                source = local_source(row["url"], paths.root, paths.sample_videos)
                done[video_id] = ok_row(row, copy_local(source, paths.videos_dir, video_id), paths.root)
                continue
            remote_target(row["url"], video_id)
        except FetchError as exc:
            done[video_id] = {**empty_row(row), "status": exc.status, "reason": exc.reason}
            continue
        existing = existing_video(paths.videos_dir, video_id)
        last = previous.get(video_id, {})
        if existing:
            done[video_id] = ok_row(row, Fetched(existing, existing.stat().st_size), paths.root)
            reused += 1
        elif last.get("status") == "unavailable" and not download["retry_unavailable"]:
            done[video_id] = {**empty_row(row), "status": "unavailable", "reason": last["reason"]}
            skipped += 1
        else:
            to_fetch.append(row)

    fetch_all(to_fetch, paths, fetch_settings, download["workers"], manifest, done, previous)
    rows = [done[row["id"]] for row in manifest]
    write_table(paths.videos_table, VIDEOS_COLUMNS, rows)
    print(summary_table(rows))
    fetched = sum(done[row["id"]]["status"] == "ok" for row in to_fetch)
    print(
        f"  {fetched} fetched now (of {len(to_fetch)} attempted), {reused} already here, "
        f"{skipped} skipped as unavailable before, {plural(removed, 'video')} removed (no longer in the manifest)"
        + (f", {plural(strays, 'other file')} removed from {paths.videos_dir.name}/" if strays else "")
    )
    counts = Counter(row["status"] for row in rows)
    ok = counts.get("ok", 0)
    if ok < download["min_videos"]:
        raise PipelineError(
            f"only {plural(ok, 'video')} downloaded, fewer than download.min_videos={download['min_videos']}; "
            f"see {paths.videos_table} for the reasons (rerun to retry the failed ones)"
        )
    total_bytes = sum(int(row["bytes"] or 0) for row in rows)
    return ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s]) + f", {total_bytes / 1e6:.1f} MB"


def fetch_all(
    to_fetch: list[dict[str, str]],
    paths: ProjectPaths,
    settings: FetchSettings,
    workers: int,
    manifest: list[dict[str, str]],
    done: dict[str, dict[str, Any]],
    previous: dict[str, dict[str, str]],
) -> None:
    """Fetch in parallel behind one request pacer; checkpoint videos.csv now and then, and on the way out.
    Stops with a PipelineError as soon as the network is judged unreachable."""
    if not to_fetch:
        return
    check_cookies(settings)
    last_checkpoint = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=workers)
    fetcher = Fetcher(settings, expected_videos=len(to_fetch))
    try:
        futures: dict[Future, dict[str, str]] = {pool.submit(fetch_row, row, paths, fetcher): row for row in to_fetch}
        with tqdm(total=len(to_fetch), desc="download", unit="video") as bar:
            for future in as_completed(futures):
                try:
                    result = future.result()
                except FetchStopped:  # the network is down: the videos not done yet stay `failed`
                    break
                done[result["id"]] = result
                bar.update()
                bar.set_postfix_str(f"{result['status']} {result['id']}", refresh=False)
                if time.monotonic() - last_checkpoint > CHECKPOINT_S:
                    checkpoint(paths, manifest, done, previous)
                    last_checkpoint = time.monotonic()
    finally:
        fetcher.close()  # running fetches end within a fraction of a second, their processes killed
        pool.shutdown(wait=True, cancel_futures=True)
        if len(done) < len(manifest):  # interrupted: keep what is known for the rerun
            checkpoint(paths, manifest, done, previous, NETWORK_DOWN if fetcher.health.dead else INTERRUPTED)
    if fetcher.health.dead:
        health = fetcher.health
        untried = sum(row["id"] not in done for row in to_fetch)
        raise PipelineError(
            f"the network is unreachable: the first {plural(health.verdict_after, 'attempt')} all failed before "
            f"reaching any host ({health.first_reason}); nothing was lost: every video not fetched is `failed` in "
            f"{paths.videos_table} ({untried} not attempted yet) and the next run retries them"
        )


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("download", __doc__, SECTIONS, run, argv)


if __name__ == "__main__":
    sys.exit(main())
