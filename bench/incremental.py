"""Cost follows the change: frames + embed under `dvc repro` when videos are added, removed or replaced, against
the same stages from nothing, on generated videos of 10-60 s with the default params (local engine).

In a scratch copy of this working tree made a git + DVC repository (its own per-video cache, which starts
empty), data/videos/ and data/videos.csv are written as the download stage writes them, then `dvc repro -s
frames` and `dvc repro -s embed` run for each case:

    from nothing       videos 0 .. N-1
    +10 new            0 .. N+9: only the new ones are decoded and embedded
    -10                10 .. N+9 (the first 10 removed: a set of videos no run has seen, so DVC's run-cache
                       cannot serve it): nothing to decode or embed
    one replaced       one of them changed in place, same size and modification time: only it is recomputed
                       (DVC trusts size and time, so this case runs `dvc repro -f -s frames`)
    fresh clone        0 .. N+9 from nothing in another scratch copy: the same md5s in dvc.lock as "+10 new"

Then the time to hash the videos (what a rerun costs when the cache serves everything), and the disk the
cache takes against the outputs.

    python bench/incremental.py                 # 200 videos: about 15 minutes on 2 cores (the videos are
                                                # generated once into bench/.cache/incremental/)
    python bench/incremental.py --videos 40
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import CACHE, machine, scratch_copy, table, timed_run, video_row, write_videos

from clipvideo.core.cache import cache_root, sha256_file
from clipvideo.core.files import atomic_path
from clipvideo.core.ids import url_id
from clipvideo.core.system import run_ffmpeg

VIDEOS = CACHE / "incremental"
ADDED = 10
REAL_VIDEOS = 2040  # the valid rows of the Kaggle CSV
REAL_MEGABYTES = 20.0  # an assumed average size at download.max_height 360 (a few minutes at about 0.5 Mbit/s)
OUTS = ("data/frames", "data/frames.csv", "data/embeddings")


def generated_video(index: int) -> Path:
    """Video `index`: 10-60 s of a moving test pattern in its own hue and grain, 320x240, 24 fps, H.264."""
    path = VIDEOS / f"video-{index:04d}.mp4"
    if path.is_file():
        return path
    rng = random.Random(index)
    duration = rng.uniform(10, 60)
    source = f"testsrc2=s=320x240:r=24,hue=h={rng.randrange(360)},noise=alls={rng.randrange(2, 12)}:allf=t"
    with atomic_path(path) as tmp:
        run_ffmpeg(
            [
                "-f",
                "lavfi",
                "-i",
                source,
                "-t",
                f"{duration:.1f}",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
                "-g",
                "48",
                "-f",
                "mp4",
                str(tmp),
            ],
            timeout_s=600,
        )
    return path


def set_videos(project: Path, indices: list[int]) -> None:
    """data/videos/ and data/videos.csv holding exactly these videos, as the download stage leaves them."""
    folder = project / "data" / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    rows, wanted = [], set()
    for index in indices:
        video_id = url_id(f"bench/incremental/{index}")
        target = folder / f"{video_id}.mp4"
        wanted.add(target.name)
        if not target.exists():
            shutil.copyfile(generated_video(index), target)
        rows.append(video_row(project, target, ("food", "art_music", "travel", "history")[index % 4]))
    for path in folder.iterdir():
        if path.name not in wanted:
            path.unlink()
    write_videos(project, rows)


def frames_and_embed(project: Path, force: bool = False) -> tuple[float, str, str]:
    """Wall seconds of `dvc repro -s frames` and `dvc repro -s embed`, and each stage's summary counts.
    `force`: run frames even when DVC sees no change (it trusts a file's size and modification time)."""
    counts = []
    total = 0.0
    for stage in ("frames", "embed"):
        force_it = ["--force"] if force and stage == "frames" else []
        seconds, stdout, stderr = timed_run(["dvc", "repro", "-s", *force_it, stage], project)
        total += seconds
        found = re.search(r"(\d+) videos? (?:decoded|embedded), (\d+) reused from the cache", stdout + stderr)
        counts.append(f"{found.group(1)} / {found.group(2)}" if found else "skipped by DVC")
    return total, counts[0], counts[1]


def locked(project: Path) -> dict[str, str]:
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in ("frames", "embed") for out in lock["stages"][stage]["outs"]}


def megabytes(path: Path) -> float:
    """Disk used under `path`, each inode once (hard links count once)."""
    seen, total = set(), 0
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        stat = item.stat()
        if item.is_file() and (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            total += stat.st_blocks * 512
    return total / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=200, help="videos of the first state (default 200)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies")
    args = parser.parse_args()
    print(f"machine: {machine()}\n")
    started = time.perf_counter()
    for index in range(args.videos + ADDED):
        generated_video(index)
    print(f"videos ready ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    base = Path(tempfile.mkdtemp(prefix="clipvideo-incremental-"))
    first, more = list(range(args.videos)), list(range(args.videos + ADDED))
    fewer = more[ADDED:]
    try:
        project = scratch_copy(base / "project")
        rows = []
        set_videos(project, first)
        baseline, frames_counts, embed_counts = frames_and_embed(project)
        rows.append(["from nothing", len(first), f"{baseline:.1f}", "1.00", frames_counts, embed_counts])

        def case(name: str, count: int, force: bool = False) -> None:
            seconds, frames_counts, embed_counts = frames_and_embed(project, force)
            rows.append([name, count, f"{seconds:.1f}", f"{seconds / baseline:.2f}", frames_counts, embed_counts])

        set_videos(project, more)
        case(f"+{ADDED} new", len(more))
        incremental = locked(project)
        set_videos(project, fewer)
        case(f"-{ADDED}", len(fewer))
        replaced = next((project / "data" / "videos").glob("*.mp4"))
        before, data = replaced.stat(), bytearray(replaced.read_bytes())
        data[-64:] = bytes(64)  # the last bytes of the media data: other pixels at the end, same size
        replaced.write_bytes(bytes(data))
        os.utime(replaced, ns=(before.st_atime_ns, before.st_mtime_ns))
        case("one replaced (same size, mtime; dvc repro -f)", len(fewer), force=True)

        fresh = scratch_copy(base / "fresh")
        set_videos(fresh, more)
        seconds, frames_counts, embed_counts = frames_and_embed(fresh)
        rows.append(
            [
                "fresh clone, from nothing",
                len(more),
                f"{seconds:.1f}",
                f"{seconds / baseline:.2f}",
                frames_counts,
                embed_counts,
            ]
        )
        same = locked(fresh) == incremental
        print(
            table(
                ["case", "videos", "frames + embed s", "vs from nothing", "decoded / reused", "embedded / reused"], rows
            )
        )
        print(
            f"\nmd5s of {', '.join(OUTS)} in dvc.lock, +{ADDED} reached incrementally vs from nothing: "
            f"{'identical' if same else 'DIFFERENT'}"
        )

        paths = sorted((project / "data" / "videos").glob("*.mp4"))
        size = sum(p.stat().st_size for p in paths)
        hashed = time.perf_counter()
        for path in paths:
            sha256_file(path)
        hash_s = time.perf_counter() - hashed
        rate = size / 1e6 / hash_s
        real = REAL_VIDEOS * REAL_MEGABYTES
        print(
            f"\nhashing {len(paths)} videos ({size / 1e6:.0f} MB, page cache): {hash_s:.2f} s, {rate:.0f} MB/s; "
            f"{REAL_VIDEOS} videos of {REAL_MEGABYTES:g} MB ({real / 1e3:.0f} GB) would take about "
            f"{real / rate:.0f} s at that rate (one thread; the stage hashes with one thread a core)"
        )
        cache = cache_root(project, None)
        data = project / "data"
        print(
            f"\ndisk (DVC's default cache.type here: copies): per-video cache {megabytes(cache):.1f} MB "
            f"({megabytes(cache / 'frames'):.1f} frames, {megabytes(cache / 'embeddings'):.1f} embeddings); "
            f"data/frames {megabytes(data / 'frames'):.1f} MB ({linked_share(project):.0%} of its files linked to "
            f"the cache); data/embeddings {megabytes(data / 'embeddings'):.1f} MB; DVC's cache of the outputs "
            f"{megabytes(project / '.dvc' / 'cache' / 'files'):.1f} MB"
        )
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print("\nrerun: python bench/incremental.py " + " ".join(sys.argv[1:]))


def linked_share(project: Path) -> float:
    files = list((project / "data" / "frames").glob("*.npz"))
    return sum(p.stat().st_nlink > 1 for p in files) / max(1, len(files))


if __name__ == "__main__":
    main()
