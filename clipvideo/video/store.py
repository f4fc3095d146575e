"""The frame store: a video's sampled frames as JPEG bytes packed into one `.npz` (about 15-30 KB a frame at
224 px), so thousands of videos stay thousands of files, never hundreds of thousands. NumPy and Pillow only:
the report draws from it without loading a decoder.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from clipvideo.core.files import write_bytes_atomic

JPEG_QUALITY = 90


@dataclass(frozen=True)
class SampledFrames:
    images: list[np.ndarray]  # each (size, size, 3) uint8 RGB, upright
    times: list[float]
    requested: int

    @property
    def is_short(self) -> bool:
        return len(self.images) < self.requested


def pack_frames(frames: SampledFrames) -> bytes:
    """The frames as JPEGs in one .npz (`jpeg`, `offsets`, `times`): the bytes of a frames file."""
    blobs = []
    for image in frames.images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        blobs.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))
    offsets = np.cumsum([0] + [len(b) for b in blobs], dtype=np.int64)
    data = np.concatenate(blobs) if blobs else np.zeros(0, dtype=np.uint8)
    packed = io.BytesIO()
    np.savez(packed, jpeg=data, offsets=offsets, times=np.asarray(frames.times, dtype=np.float64))
    return packed.getvalue()


def save_frames(path: Path, frames: SampledFrames) -> int:
    """Write the frames file atomically; returns the bytes written."""
    data = pack_frames(frames)
    write_bytes_atomic(path, data)
    return len(data)


def load_frame_jpegs(source: Path | bytes) -> list[bytes]:
    """The JPEG bytes of every frame of a frames file (its path, or its bytes)."""
    with np.load(io.BytesIO(source) if isinstance(source, bytes) else source) as packed:
        data, offsets = packed["jpeg"], packed["offsets"]
    return [data[offsets[i] : offsets[i + 1]].tobytes() for i in range(len(offsets) - 1)]
