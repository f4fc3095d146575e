"""The ffmpeg binary: the system one when present, else the one the imageio-ffmpeg wheel ships."""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Sequence

from clipvideo.errors import PipelineError


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
