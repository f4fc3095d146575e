"""Shared bench helpers: cached generated videos, frames files of them, scratch projects and their videos.csv,
timing, plain-text tables, machine description."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from tabulate import tabulate

from clipvideo.core.contracts import VIDEOS_COLUMNS
from clipvideo.core.files import atomic_path
from clipvideo.core.system import run_ffmpeg
from clipvideo.core.tables import TableRow, read_table, write_table
from clipvideo.video.decode import sample_frames
from clipvideo.video.store import save_frames

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
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=s={width}x{height}:r={fps},noise=alls=8:allf=t{hue}",
            "-t",
            str(minutes * 60),
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "26",
            "-pix_fmt",
            "yuv420p",
            "-g",
            str(gop),
            "-keyint_min",
            str(gop),
            "-sc_threshold",
            "0",
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
            str(tmp),
        ]
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


def scratch_copy(target: Path) -> Path:
    """This working tree as a fresh checkout plus the uncommitted changes: the files git lists (tracked, or new and
    not ignored; so no outputs, caches or virtual environment), committed in a git repository of its own."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        if (REPO / name).is_file():  # not one deleted in the working tree
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    return commit_tree(target, "this working tree")


def revision_copy(revision: str, target: Path) -> Path:
    """The committed tree of `revision`, as a fresh clone would have it (its own git repository)."""
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", revision], cwd=REPO, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x"], cwd=target, input=archive, check=True)
    return commit_tree(target, revision)


def commit_tree(target: Path, message: str) -> Path:
    """`target` made a git repository of its own, everything in it committed (DVC needs one)."""
    identity = {
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@localhost",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@localhost",
    }
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", message]):
        timed_run(command, target, {**os.environ, **identity})
    return target


def timed_run(cmd: list[str], cwd: Path, env: Mapping[str, str] | None = None) -> tuple[float, str, str]:
    """Wall seconds of a command (in `env`, default this process's environment), and its stdout and stderr; the
    bench stops with the end of its output when it fails."""
    started = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed in {cwd}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return seconds, result.stdout, result.stderr


def bench_frames(path: Path, count: int, size: int = 224) -> int:
    """`count` frames of the generated 1-minute video, `size` pixels, in a frames file as the frames stage writes
    it at `path`; returns its bytes."""
    return save_frames(path, sample_frames(bench_video(1), count, size))


def video_row(project: Path, video: Path, category: str, duration_s: float | str = "") -> dict[str, object]:
    """data/videos.csv's row of `video` (a file under the project's data/videos/), as the download stage
    writes it for a downloaded video."""
    return {
        "id": video.stem,
        "category": category,
        "status": "ok",
        "reason": "",
        "path": video.relative_to(project).as_posix(),
        "bytes": video.stat().st_size,
        "duration_s": duration_s,
    }


def read_videos(project: Path) -> list[TableRow]:
    return read_table(project / "data" / "videos.csv", VIDEOS_COLUMNS)


def write_videos(project: Path, rows: Iterable[dict]) -> None:
    write_table(project / "data" / "videos.csv", VIDEOS_COLUMNS, rows)
