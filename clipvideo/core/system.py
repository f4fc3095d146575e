"""The machine: the cores this process may use, and the ffmpeg binary (the system one when present, else
the one the imageio-ffmpeg wheel ships, so the set-up from the lock needs no system ffmpeg)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING

from clipvideo.core.errors import ParamsError, PipelineError

if TYPE_CHECKING:
    import torch

# A GPU's decoding threads: the CPU side must keep up with thousands of images a second (the local engine's
# loader threads, a Ray GPU replica's CPUs).
MAX_DECODE_THREADS_PER_GPU = 8


# torch's CPU kernels pick their code path by CPU: MKL's matmuls and ATen's own vector kernels on AVX-512 and on
# AVX2 give other last bits, hence other model bytes. Both pinned to AVX2 (MKL's conditional numerical
# reproducibility, STRICT: whatever the thread count) give any machine with AVX2 the same results;
# docs/models.md, "Same bytes on any x86 machine".
REPRODUCIBLE_CPU = {"MKL_CBWR": "AVX2,STRICT", "ATEN_CPU_CAPABILITY": "avx2"}


def reproducible_cpu() -> None:
    """For a process that trains or evaluates on CPU, before torch is imported (both are read once)."""
    os.environ.update(REPRODUCIBLE_CPU)


def torch_device(setting: str, key: str) -> torch.device:
    """The torch device a `<key>: auto | cpu | cuda` setting names here: auto takes CUDA when torch finds a GPU;
    cuda without one is a one-line error naming the key (torch imported only here: core stays light)."""
    import torch

    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise ParamsError(f"settings.yaml: {key}='cuda': no CUDA device is available here")
    return torch.device(setting)


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
