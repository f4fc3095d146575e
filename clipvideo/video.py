"""Decoding: evenly spaced frames per video, upright, resized and centre-cropped, one file per video.

Frames are stored as JPEG bytes packed into one `.npz` per video (about 15-30 KB a frame at
224 px), so thousands of videos stay thousands of files, never hundreds of thousands.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from clipvideo.files import atomic_path

# Seek instead of decoding forward when the next target is further ahead than this.
SEEK_GAP_S = 2.0
JPEG_QUALITY = 90


class VideoError(Exception):
    """A video that cannot be used; the message is the reason recorded in frames.csv."""


@dataclass(frozen=True)
class SampledFrames:
    images: list[np.ndarray]  # each (size, size, 3) uint8 RGB, upright
    times: list[float]
    requested: int

    @property
    def is_short(self) -> bool:
        return len(self.images) < self.requested


def sample_frame_times(duration_s: float, count: int) -> np.ndarray:
    """Centres of `count` equal slices of the video: evenly spaced, never the very first/last frame."""
    return (np.arange(count, dtype=np.float64) + 0.5) * (duration_s / count)


def open_video(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise VideoError(f"file not found: {path.name}")
    if path.stat().st_size == 0:
        raise VideoError("empty file (0 bytes)")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise VideoError(f"not a readable video container ({exc.strerror or type(exc).__name__})") from exc
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        container.close()
        raise VideoError(f"no video stream (has: {', '.join(kinds)})")
    return container


def stream_duration(container: av.container.InputContainer) -> float | None:
    """Duration from the stream, else the container, else by demuxing packets (no decoding)."""
    stream = container.streams.video[0]
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base - max(0.0, start)
    last = None
    for packet in container.demux(stream):
        if packet.pts is not None:
            end = float((packet.pts + (packet.duration or 0)) * stream.time_base)
            last = end if last is None else max(last, end)
    container.seek(0)
    return None if last is None else last - start


def checked_duration(container: av.container.InputContainer) -> float:
    duration = stream_duration(container)
    if not duration or duration <= 0 or not math.isfinite(duration):
        raise VideoError("no duration: the container reports none and no packet carries a timestamp")
    return duration


def video_duration(path: Path) -> float:
    with open_video(path) as container:
        return checked_duration(container)


def upright_square(frame: av.VideoFrame, size: int) -> np.ndarray:
    """RGB at `size` x `size`: rotate per the display matrix, scale the short side, crop the centre."""
    quarter_turns = round((frame.rotation or 0) / 90) % 4
    width, height = frame.width, frame.height
    display_w, display_h = (height, width) if quarter_turns % 2 else (width, height)
    scale = size / min(display_w, display_h)
    out_w = max(size, round(width * scale)) if quarter_turns % 2 == 0 else max(size, round(height * scale))
    out_h = max(size, round(height * scale)) if quarter_turns % 2 == 0 else max(size, round(width * scale))
    # reformat works on the stored (unrotated) picture: swap back for odd quarter turns
    stored_w, stored_h = (out_h, out_w) if quarter_turns % 2 else (out_w, out_h)
    rgb = frame.to_ndarray(format="rgb24", width=stored_w, height=stored_h, interpolation="AREA")
    if quarter_turns:
        rgb = np.rot90(rgb, k=quarter_turns)
    top = (rgb.shape[0] - size) // 2
    left = (rgb.shape[1] - size) // 2
    return np.ascontiguousarray(rgb[top : top + size, left : left + size])


def decode_at_times(
    container: av.container.InputContainer, targets: np.ndarray, size: int, keyframe_only: bool
) -> tuple[list[np.ndarray], list[float]]:
    """The frame shown at each target time (exact), or the keyframe before it (approximate).

    Decodes forward between close targets and seeks across gaps; a frame picked for two targets
    (a video shorter than the request) is kept once.
    """
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    time_base = stream.time_base
    half_frame = 0.5 / float(stream.average_rate or stream.guessed_rate or 25)
    images: list[np.ndarray] = []
    times: list[float] = []
    frames = None
    last_time = -math.inf
    last_frame = None
    decoded = 0
    for target in targets:
        if last_frame is not None and last_time >= target - half_frame:
            chosen = last_frame
        else:
            if keyframe_only or frames is None or target - last_time > SEEK_GAP_S:
                container.seek(max(0, int(target / time_base)), stream=stream, backward=True, any_frame=False)
                frames = container.decode(stream)
                if keyframe_only:
                    last_time = -math.inf
            chosen = None
            for frame in frames:
                decoded += 1
                last_frame = frame
                last_time = frame.time if frame.time is not None else last_time + 2 * half_frame
                if keyframe_only or last_time >= target - half_frame:
                    chosen = frame
                    break
            if chosen is None:  # ran off the end: the last frame is the one shown
                chosen = last_frame
        if chosen is None:
            break
        chosen_time = chosen.time if chosen.time is not None else last_time
        if not keyframe_only and times and chosen_time == times[-1]:
            continue
        images.append(upright_square(chosen, size))
        times.append(float(chosen_time))
    if decoded == 0 and not images:
        raise VideoError("no decodable video frames")
    return images, times


def sample_frames(path: Path, count: int, size: int, mode: str = "exact") -> SampledFrames:
    """`count` evenly spaced frames over the real duration (fewer for a very short video)."""
    with open_video(path) as container:
        duration = checked_duration(container)
        stream = container.streams.video[0]
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        targets = start + sample_frame_times(duration, count)
        try:
            images, times = decode_at_times(container, targets, size, keyframe_only=mode == "keyframe")
        except av.error.FFmpegError as exc:
            raise VideoError(f"decoding failed ({exc.strerror or type(exc).__name__})") from exc
    return SampledFrames(images=images, times=times, requested=count)


def save_frames(path: Path, frames: SampledFrames) -> int:
    """Pack the frames as JPEGs into one .npz; returns the bytes written."""
    blobs = []
    for image in frames.images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        blobs.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))
    offsets = np.cumsum([0] + [len(b) for b in blobs], dtype=np.int64)
    data = np.concatenate(blobs) if blobs else np.zeros(0, dtype=np.uint8)
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.savez(handle, jpeg=data, offsets=offsets, times=np.asarray(frames.times, dtype=np.float64))
    return path.stat().st_size


def load_frame_jpegs(path: Path) -> list[bytes]:
    with np.load(path) as packed:
        data, offsets = packed["jpeg"], packed["offsets"]
    return [data[offsets[i] : offsets[i + 1]].tobytes() for i in range(len(offsets) - 1)]
