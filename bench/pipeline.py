"""Whole pipeline: `dvc repro` wall time on the default sample (from nothing, and a no-op), the start of a light
stage (`python -m stages.train linear --help`), and the peak memory of the frames and embed stages at 1x and
4x the videos (it must stay flat: they stream, never accumulate).

Everything runs in a scratch copy of this working tree (the files git lists, so without data/, models/, the DVC
cache and bench/.cache/; a git repository of its own), never in the checkout itself. `--baseline REV` measures a
second scratch copy of that git revision in the same run, for a before/after ratio on the same machine and load.

    python bench/pipeline.py                       # about 3 minutes on 2 cores
    python bench/pipeline.py --baseline 56a4a1e    # and the same for that revision (about 6 minutes)
    python bench/pipeline.py --scratch /tmp/p --keep
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, machine, read_videos, revision_copy, scratch_copy, table, timed_run, video_row, write_videos

from clipvideo.core.cache import cache_root
from clipvideo.core.ids import url_id

# Runs a command and prints the peak resident memory (KiB) of that command alone.
PEAK_RSS = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
)


def help_seconds(project: Path, repeat: int = 5) -> float:
    """Best wall time of `python -m stages.train linear --help` in the project (a light stage's start)."""
    return min(timed_run([sys.executable, "-m", "stages.train", "linear", "--help"], project)[0] for _ in range(repeat))


def pipeline_times(project: Path) -> list[str]:
    """dvc repro from nothing, the no-op repro after it, and a light stage's start."""
    full, _ = timed_run(["dvc", "repro"], project)
    noop, _ = timed_run(["dvc", "repro"], project)
    return [f"{full:.1f}", f"{noop:.1f}", f"{help_seconds(project):.2f}"]


def peak_memory(stage: str, root: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one stage run as DVC runs it."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, sys.executable, "-m", f"stages.{stage}", "--root", str(root)],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - started, int(result.stdout.strip().splitlines()[-1]) / 1024


def multiplied(project: Path, target: Path, factor: int) -> Path:
    """A copy of `project` whose videos.csv lists every video `factor` times (hard links under new ids)."""
    shutil.copytree(project, target, symlinks=True, ignore=shutil.ignore_patterns("frames*", "embeddings*"))
    listed = [row for row in read_videos(project) if row["status"] == "ok"]
    rows = []
    for copy in range(factor):
        for row in listed:
            new_id = url_id(f"{copy}:{row['id']}")  # a fresh hex id for either id shape
            source = project / row["path"]
            path = (target / row["path"]).with_name(new_id + source.suffix)
            if not path.exists():
                os.link(source, path)
            rows.append(video_row(target, path, row["category"], row["duration_s"]))
    write_videos(target, rows)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scratch", type=Path, help="where to build the scratch copy (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy")
    parser.add_argument("--baseline", metavar="REV", help="also measure this git revision (before/after ratios)")
    args = parser.parse_args()
    print(f"machine: {machine()}\n")
    base = args.scratch or Path(tempfile.mkdtemp(prefix="clipvideo-bench-"))
    try:
        project = scratch_copy(base / "project")  # its own git repository, as DVC needs
        rows = [["this working tree", *pipeline_times(project)]]
        if args.baseline:
            rows.insert(0, [args.baseline, *pipeline_times(revision_copy(args.baseline, base / "baseline"))])
            rows.append(
                [
                    "ratio (this / baseline)",
                    *(f"{float(a) / float(b):.2f}x" for a, b in zip(rows[1][1:], rows[0][1:], strict=True)),
                ]
            )
        headers = ["code", "dvc repro s (from nothing)", "no-op repro s", "train linear --help s (best of 5)"]
        print(table(headers, rows))
        videos = sum(1 for row in read_videos(project) if row["status"] == "ok")
        rows = []
        for factor in (1, 4):
            root = project if factor == 1 else multiplied(project, base / f"x{factor}", factor)
            shutil.rmtree(cache_root(root, None), ignore_errors=True)  # measure the work, not the per-video cache
            for stage in ("frames", "embed"):
                seconds, peak = peak_memory(stage, root)
                rows.append([stage, f"{factor}x ({factor * videos} videos)", f"{seconds:.1f}", f"{peak:.0f}"])
        print("\nPeak memory of one stage run (resident set, MB):\n")
        print(table(["stage", "videos", "seconds", "peak RSS MB"], rows))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print("\nrerun: python bench/pipeline.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
