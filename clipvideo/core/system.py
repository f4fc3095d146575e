"""The machine: the cores this process may use, and the ffmpeg binary (the system one when present, else
the one the imageio-ffmpeg wheel ships, so the set-up from the lock needs no system ffmpeg)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Sequence

from clipvideo.core.errors import PipelineError

# A GPU's decoding threads: the CPU side must keep up with thousands of images a second (the local engine's
# loader threads, a Ray GPU replica's CPUs).
MAX_DECODE_THREADS_PER_GPU = 8


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity: taskset, a container's cpuset), not the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@functools.cache
def ffmpeg_binary() -> str:
    system = shutil.which("ffmpeg")
    if system:
        return system
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: Sequence[str], timeout_s: float = 600) -> None:
    """Run ffmpeg with an argument list (never a shell); raise with its last error line."""
    cmd = [ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise PipelineError(f"ffmpeg failed ({result.returncode}): {last}")
