"""The download step: every valid manifest row -> data/videos/<id>.<ext> and data/videos.csv.

Local videos of the folder source and a CSV's relative paths are not copied: their videos.csv path is the file
where it lies, once its bytes are checked against its id (a digest of them; the frames step checks again).

Resumable (both outputs are `persist: true` in dvc.yaml): a video whose complete file is already in
data/videos/ is never fetched again, `failed` rows are retried, `unavailable` ones are skipped unless
settings.yaml's download.retry_unavailable is set. data/videos.csv is checkpointed while the step runs, so a
killed run loses at most the last few verdicts, never a finished video. When the first attempts all fail
before reaching any host, the step stops at once: the network is down, and every row not tried stays `failed`.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tabulate import tabulate
from tqdm import tqdm

from clipvideo.acquire.fetch import (
    VIDEO_SUFFIXES,
    Cookies,
    Fetched,
    Fetcher,
    FetchError,
    FetchStopped,
    check_cookies,
    copy_local,
    existing_video,
    is_remote,
    local_source,
    reason_text,
    remote_target,
)
from clipvideo.acquire.network import AddressPolicy, refused_address
from clipvideo.config.schema import DownloadParams, DownloadSettings
from clipvideo.core.cache import sha256_files
from clipvideo.core.checkpoint import Checkpoint
from clipvideo.core.contracts import MANIFEST_COLUMNS, MANIFEST_STATUSES, VIDEO_STATUSES, VIDEOS_COLUMNS, Status
from clipvideo.core.errors import PipelineError
from clipvideo.core.ids import URL_ID, is_safe_id
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.tables import read_table, write_table
from clipvideo.core.text import plural
from clipvideo.engines.engine import LocalEngine
from clipvideo.video.probe import VideoError, video_duration

CHECKPOINT_S = 10.0
# Written into data/videos/: the params that shape the downloaded files; when they change, files are fetched anew.
FORMAT_FILE = ".format.json"
INTERRUPTED = "not attempted yet (the run was interrupted)"
NETWORK_DOWN = "not attempted yet (the network was unreachable)"

Row = dict[str, Any]


def empty_row(row: Row) -> Row:
    return {"id": row["id"], "category": row["category"], "path": "", "bytes": "", "duration_s": ""}


def failed_row(row: Row, status: str, reason: str) -> Row:
    return {**empty_row(row), "status": status, "reason": reason}


def ok_row(row: Row, fetched: Fetched, root: Path, duration: str | None = None) -> Row:
    """`duration`: known already (an earlier run's row for this very file), else read from the file."""
    if duration is None:
        try:
            duration = f"{video_duration(fetched.path):.3f}"
        except VideoError:
            duration = ""  # the frames stage records why it cannot decode it
    where = fetched.path
    path = (where.relative_to(root) if where.is_relative_to(root) else where).as_posix()  # in place: as listed
    return {
        **empty_row(row),
        "status": Status.OK,
        "reason": "",
        "path": path,
        "bytes": fetched.bytes,
        "duration_s": duration,
    }


def fetch_row(row: Row, paths: ProjectPaths, fetcher: Fetcher) -> Row | None:
    """One remote video -> its videos.csv row; never raises for a bad video, so one cannot stop the rest.
    None: the fetcher was stopped (the network is down, or the step is ending) and this video got no verdict."""
    try:
        return ok_row(row, fetcher.fetch(row["url"], paths.videos_dir, row["id"]), paths.root)
    except FetchError as exc:
        return failed_row(row, exc.status, exc.reason)
    except FetchStopped:
        return None
    except Exception as exc:  # an unforeseen error: transient until shown otherwise
        return failed_row(row, Status.FAILED, reason_text(f"{type(exc).__name__}: {exc}"))


def previous_rows(paths: ProjectPaths) -> dict[str, Row]:
    """The last run's verdicts (a checkpoint after a kill), or none when there is no usable table."""
    if not paths.videos_table.is_file():
        return {}
    try:
        return {row["id"]: row for row in read_table(paths.videos_table, VIDEOS_COLUMNS)}
    except PipelineError as exc:
        print(f"download: ignoring the previous {paths.videos_table}: {exc}", file=sys.stderr)
        return {}


def is_video_file(path: Path) -> bool:
    """A file this step stores: `<validated id><video suffix>` (not the format marker, not a temporary)."""
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
    manifest: list[Row],
    done: dict[str, Row],
    previous: dict[str, Row],
    not_tried: str = INTERRUPTED,
) -> None:
    """videos.csv in manifest order; rows not reached yet keep their last verdict, or say they were not tried."""
    rows = []
    for row in manifest:
        if row["id"] in done:
            rows.append(done[row["id"]])
        elif row["id"] in previous and previous[row["id"]]["status"] != Status.OK:
            rows.append(previous[row["id"]])
        else:
            rows.append(failed_row(row, Status.FAILED, not_tried))
    write_table(paths.videos_table, VIDEOS_COLUMNS, rows)


def in_place_digests(manifest: list[Row], paths: ProjectPaths) -> dict[str, str]:
    """url -> SHA-256 of the local videos read in place (valid rows naming a video file outside data/), hashed
    in threads with a progress bar: each must still be the bytes the manifest made its id from."""
    data = paths.data.resolve()
    local = []
    for row in manifest:
        if row["status"] == Status.VALID and URL_ID.fullmatch(row["id"]) and not is_remote(row["url"]):
            with contextlib.suppress(FetchError):
                source = local_source(row["url"], paths.root, None)
                if not source.resolve().is_relative_to(data):
                    local.append((row["url"], source))
    if not local:
        return {}
    digests = sha256_files([source for _, source in local], "download: checking local videos", unit="video")
    return {url: digest for (url, _), digest in zip(local, digests, strict=True)}


def in_place_row(row: Row, paths: ProjectPaths, digest: str) -> Row:
    """A local video read where it lies (folder source, a CSV's relative path): `ok` without a copy, only if its
    bytes are those its id names; a hand-edited manifest cannot make the pipeline read another file."""
    if digest[: len(row["id"])] != row["id"]:
        raise FetchError(
            Status.INVALID,
            f"{row['url'][:80]!r}: its bytes are not those of id {row['id']} (changed "
            "since the manifest listed it? rerun the manifest stage)",
        )
    source = paths.root / row["url"]
    return ok_row(row, Fetched(source, source.stat().st_size), paths.root)


def settled_verdict(
    row: Row, paths: ProjectPaths, previous: dict[str, Row], settings: DownloadSettings, digests: dict[str, str]
) -> tuple[Row | None, str]:
    """The row's verdict without fetching, and why: `settled` (invalid, a local copy), `in place` (a local video
    outside data/, with its digest in `digests`), `here` (an earlier run
    fetched it), `skipped` (unavailable before, and for an address download.allow_private_networks refused:
    refused by the setting as it is now); or (None, `fetch`)."""
    try:
        if row["status"] != Status.VALID:
            raise FetchError(Status.INVALID, row["reason"] or "invalid in the manifest")
        if not is_safe_id(row["id"]):
            raise FetchError(Status.INVALID, f"unsafe id {row['id'][:40]!r}")
        if not is_remote(row["url"]):
            if row["url"] in digests:
                return in_place_row(row, paths, digests[row["url"]]), "in place"
            source = local_source(row["url"], paths.root, paths.sample_videos)
            return ok_row(row, copy_local(source, paths.videos_dir, row["id"]), paths.root), "settled"
        remote_target(row["url"], row["id"])
    except FetchError as exc:
        return failed_row(row, exc.status, exc.reason), "settled"
    existing = existing_video(paths.videos_dir, row["id"])
    last = previous.get(row["id"], {})
    if existing:
        fetched = Fetched(existing, existing.stat().st_size)
        seen = (Status.OK, existing.relative_to(paths.root).as_posix(), str(fetched.bytes))
        same_file = (last.get("status"), last.get("path"), last.get("bytes")) == seen  # an earlier run's row for it
        return ok_row(row, fetched, paths.root, last["duration_s"] if same_file else None), "here"
    if last.get("status") == Status.UNAVAILABLE and not settings.retry_unavailable:
        refused = refused_address(last["reason"])
        policy = AddressPolicy(settings.allow_private_networks)
        reason = policy.refusal(refused[0], [refused[1]]) if refused else last["reason"]
        if reason:  # None: the address the setting refused is allowed now
            return failed_row(row, Status.UNAVAILABLE, reason), "skipped"
    return None, "fetch"


def summary_table(rows: list[Row]) -> str:
    """ok / unavailable / failed / invalid and megabytes per category, then the total."""
    counts: Counter[tuple[str, str]] = Counter()
    megabytes: Counter[str] = Counter()
    for row in rows:
        for category in (row["category"] or "(empty)", "total"):
            counts[(category, row["status"])] += 1
            megabytes[category] += int(row["bytes"] or 0) / 1e6
    categories = [*sorted({category for category, _ in counts} - {"total"}), "total"]
    body = [[c[:13], *(counts[(c, s)] for s in VIDEO_STATUSES), f"{megabytes[c]:.1f}"] for c in categories]
    return tabulate(body, headers=["category", *map(str, VIDEO_STATUSES), "MB"], tablefmt="simple")


def download_videos(paths: ProjectPaths, params: DownloadParams, settings: DownloadSettings) -> str:
    """Fetch what the manifest asks for and is not here yet; prints the table, returns the summary line."""
    cookies = Cookies.from_settings(settings, paths.root)
    manifest = read_table(paths.manifest, MANIFEST_COLUMNS, choices={"status": MANIFEST_STATUSES})
    recipe = {"max_height": params.max_height, "max_filesize_mb": params.max_filesize_mb}
    videos = Checkpoint(paths.videos_dir, recipe, marker=FORMAT_FILE, owns=is_video_file)
    previous = {} if videos.open() else previous_rows(paths)
    wanted = {row["id"] for row in manifest if row["status"] == Status.VALID and is_safe_id(row["id"])}
    removed, strays = prune(paths, wanted)
    digests = in_place_digests(manifest, paths)
    done: dict[str, Row] = {}
    to_fetch: list[Row] = []
    how: Counter[str] = Counter()
    for row in manifest:
        verdict, why = settled_verdict(row, paths, previous, settings, digests)
        how[why] += 1
        if verdict is None:
            to_fetch.append(row)
        else:
            done[row["id"]] = verdict
    if to_fetch:
        check_cookies(cookies)
        fetcher = Fetcher(params, settings, cookies, expected_videos=len(to_fetch))
        fetch_all(to_fetch, paths, fetcher, settings.workers, manifest, done, previous)
    rows = [done[row["id"]] for row in manifest]
    write_table(paths.videos_table, VIDEOS_COLUMNS, rows)
    print(summary_table(rows))
    fetched = sum(done[row["id"]]["status"] == Status.OK for row in to_fetch)
    print(
        f"  {fetched} fetched now (of {len(to_fetch)} attempted), {how['here']} already here, "
        + (f"{how['in place']} read in place, " if how["in place"] else "")
        + f"{how['skipped']} skipped as unavailable before, "
        f"{plural(removed, 'video')} removed (no longer in the manifest)"
        + (f", {plural(strays, 'other file')} removed from {paths.videos_dir.name}/" if strays else "")
    )
    counts = Counter(row["status"] for row in rows)
    if counts[Status.OK] < settings.min_videos:
        raise PipelineError(
            f"only {plural(counts[Status.OK], 'video')} downloaded, fewer than download.min_videos="
            f"{settings.min_videos}; see {paths.videos_table} for the reasons (rerun to retry the failed ones)"
        )
    total_bytes = sum(int(row["bytes"] or 0) for row in rows)
    return ", ".join(f"{counts[s]} {s}" for s in VIDEO_STATUSES if counts[s]) + f", {total_bytes / 1e6:.1f} MB"


def fetch_all(
    to_fetch: list[Row],
    paths: ProjectPaths,
    fetcher: Fetcher,
    workers: int,
    manifest: list[Row],
    done: dict[str, Row],
    previous: dict[str, Row],
) -> None:
    """Fetch in parallel behind one request pacer; checkpoint videos.csv now and then, and on the way out.
    Stops with a PipelineError as soon as the network is judged unreachable."""
    last_checkpoint = time.monotonic()
    calls = [(row, paths, fetcher) for row in to_fetch]
    try:
        # Leaving the block closes the fetcher first (running fetches end within a fraction of a second, their
        # processes killed), then the threads, which no longer wait on anything.
        with (
            contextlib.closing(LocalEngine(workers).map(fetch_row, calls)) as results,
            fetcher,
            tqdm(total=len(to_fetch), desc="download", unit="video") as bar,
        ):
            for _, result in results:
                if result is None:  # stopped: no verdict, the video stays `failed`; the rest drain at once, and
                    continue  # a verdict that finished beside this one still counts
                done[result["id"]] = result
                bar.update()
                bar.set_postfix_str(f"{result['status']} {result['id']}", refresh=False)
                if time.monotonic() - last_checkpoint > CHECKPOINT_S:
                    checkpoint(paths, manifest, done, previous)
                    last_checkpoint = time.monotonic()
    finally:
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
