"""Shared bench helpers: cached generated videos, timing, plain-text tables, machine description."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tabulate import tabulate

from clipvideo.core.files import atomic_path
from clipvideo.core.system import run_ffmpeg

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench" / ".cache"
KEYFRAME_INTERVAL_S = 5


def bench_video(minutes: float, width: int = 640, height: int = 360, fps: int = 30, variant: int = 0) -> Path:
    """A generated H.264 video (moving test pattern with grain, keyframe every 5 s), cached in bench/.cache/.
    `variant` > 0: the same in another hue, so other pictures and other bytes (the per-video cache knows videos
    by their bytes and frames by theirs)."""
    shade = f"-hue{variant}" if variant else ""
    path = CACHE / f"testsrc-{width}x{height}-{fps}fps-{minutes:g}min{shade}.mp4"
    if path.is_file():
        return path
    print(f"generating {path.name} (cached for later runs) ...", file=sys.stderr, flush=True)
    gop = fps * KEYFRAME_INTERVAL_S
    hue = f",hue=h={variant * 37 % 360}" if variant else ""
    with atomic_path(path) as tmp:
        args = [
            "-f", "lavfi", "-i", f"testsrc2=s={width}x{height}:r={fps},noise=alls=8:allf=t{hue}",
            "-t", str(minutes * 60), "-c:v", "libx264", "-preset", "veryfast", "-crf", "26",
            "-pix_fmt", "yuv420p", "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
            "-movflags", "+faststart", "-f", "mp4", str(tmp),
        ]  # fmt: skip
        run_ffmpeg(args, timeout_s=3600)
    return path


def timed(function: Callable[[], object], repeat: int = 1) -> float:
    """Best wall time of `repeat` calls, in seconds (best-of filters out noise from other load)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table (pastes into docs/performance.md as is)."""
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def machine() -> str:
    """CPU model, cores and load, so a table says where it came from."""
    model = platform.processor() or platform.machine()
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
        model = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{model}, {os.cpu_count()} cores, load average {load}, Python {platform.python_version()}"


# Outputs and caches a fresh checkout does not have: at the top, and inside these folders.
SKIP_TOP = {"data", "models", ".pytest_cache", ".ruff_cache", ".benchmarks"}
SKIP_INSIDE = {".dvc": {"cache", "tmp"}, "bench": {".cache"}}


def scratch_copy(target: Path) -> Path:
    """This working tree without outputs and caches (a fresh checkout plus the uncommitted changes)."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        where = Path(directory).resolve().relative_to(REPO).as_posix()
        skipped = SKIP_TOP if where == "." else SKIP_INSIDE.get(where, set())
        return set(names) & (skipped | {"__pycache__"})

    shutil.copytree(REPO, target, ignore=ignore, symlinks=True)
    return target


def revision_copy(revision: str, target: Path) -> Path:
    """The committed tree of `revision`, as a fresh clone would have it (its own git repository)."""
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", revision], cwd=REPO, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x"], cwd=target, input=archive, check=True)
    identity = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost", "GIT_COMMITTER_NAME": "bench",
                "GIT_COMMITTER_EMAIL": "bench@localhost"}  # fmt: skip
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", revision]):
        subprocess.run(command, cwd=target, check=True, env={**os.environ, **identity})
    return target


def timed_run(cmd: list[str], cwd: Path) -> tuple[float, str]:
    """Wall seconds of a command, and what it printed."""
    started = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed in {cwd}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return time.perf_counter() - started, result.stdout + result.stderr
