"""Decoding: evenly spaced frames per video, upright, resized and centre-cropped, one file per video.

Frames are stored as JPEG bytes packed into one `.npz` per video (about 15-30 KB a frame at
224 px), so thousands of videos stay thousands of files, never hundreds of thousands.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from clipvideo.files import atomic_path

# Split a video across threads only when there is this much to decode (opening it twice costs too).
MIN_PACKETS_TO_SPLIT = 600
MIN_RUNS_TO_SPLIT = 8
JPEG_QUALITY = 90
THREAD_STATE = threading.local()


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


# Leading bytes of the containers a download can produce; a file that starts like one but does
# not open is damaged (usually cut short), not of an unknown kind.
CONTAINER_SIGNATURES = (
    (4, b"ftyp", "MP4/MOV"),
    (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (0, b"RIFF", "AVI"),
    (0, b"FLV", "FLV"),
    (0, b"OggS", "Ogg"),
    (0, b"\x00\x00\x01\xba", "MPEG-PS"),
)
TEXT_PAGE_STARTS = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"{")


def describe_unreadable(path: Path) -> str:
    """Why a non-empty file does not open as a container, told from its first bytes."""
    with path.open("rb") as handle:
        head = handle.read(64)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(TEXT_PAGE_STARTS):
        return "not a video: the file is a text/HTML page (an error or login page saved in place of the video?)"
    for offset, magic, kind in CONTAINER_SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return f"damaged or incomplete {kind} file: it starts like one but its index cannot be read (cut short?)"
    return "not a readable video container (unknown format)"


def open_video(path: Path) -> av.container.InputContainer:
    """Open a video file, or raise VideoError with a reason a person understands."""
    if not path.is_file():
        raise VideoError(f"file not found: {path.name}")
    if path.stat().st_size == 0:
        raise VideoError("empty file (0 bytes)")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise VideoError(describe_unreadable(path)) from exc
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        container.close()
        raise VideoError(f"no video stream (has: {', '.join(kinds)})")
    return container


def frame_rate(stream: av.video.stream.VideoStream) -> float:
    """Frames per second as declared or guessed by the demuxer (25 when neither knows)."""
    return float(stream.average_rate or stream.guessed_rate or 25)


def stream_start(stream: av.video.stream.VideoStream) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def demuxed_duration(path: str) -> float | None:
    """Duration by reading every packet (no decoding) in a separate container, so the caller's
    container is never rewound (raw elementary streams cannot seek): the last packet's end, or
    the packet count over the frame rate when packets carry no timestamps at all."""
    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        last = None
        packets = 0
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the flush packet at the end
                packets += 1
                if packet.pts is not None:
                    end = float((packet.pts + (packet.duration or 0)) * stream.time_base)
                    last = end if last is None else max(last, end)
        except av.error.FFmpegError:
            pass  # a damaged tail: the packets read so far still say how long the video is
        if last is not None:
            return last - stream_start(stream)
        return packets / frame_rate(stream) if packets else None


def stream_duration(container: av.container.InputContainer) -> float | None:
    """Duration from the stream, else the container, else by demuxing packets (no decoding)."""
    stream = container.streams.video[0]
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base - max(0.0, stream_start(stream))
    return demuxed_duration(container.name)


def checked_duration(container: av.container.InputContainer) -> float:
    duration = stream_duration(container)
    if not duration or duration <= 0 or not math.isfinite(duration):
        raise VideoError("no duration: the container reports none and it has no readable video packets")
    return duration


def video_duration(path: Path) -> float:
    with open_video(path) as container:
        return checked_duration(container)


def thread_reformatter() -> VideoReformatter:
    """One scaler per thread, reused across frames: building a new one for every frame costs 1-2 ms."""
    if not hasattr(THREAD_STATE, "reformatter"):
        THREAD_STATE.reformatter = VideoReformatter()
    return THREAD_STATE.reformatter


def upright_square(frame: av.VideoFrame, size: int) -> np.ndarray:
    """RGB at `size` x `size`: rotate per the display matrix, scale the short side, crop the centre."""
    quarter_turns = round((frame.rotation or 0) / 90) % 4
    # the short side is the same before and after a quarter turn: scale the stored picture, then rotate
    scale = size / min(frame.width, frame.height)
    width, height = max(size, round(frame.width * scale)), max(size, round(frame.height * scale))
    scaled = thread_reformatter().reformat(frame, width=width, height=height, format="rgb24", interpolation="AREA")
    rgb = scaled.to_ndarray()
    if quarter_turns:
        rgb = np.rot90(rgb, k=quarter_turns)
    top = (rgb.shape[0] - size) // 2
    left = (rgb.shape[1] - size) // 2
    return np.ascontiguousarray(rgb[top : top + size, left : left + size])


@dataclass(frozen=True)
class PacketIndex:
    """Every video packet in decode order, from demuxing alone (no decoding: about 50 ms for 10 minutes)."""

    pts: np.ndarray  # int64, decode order
    is_keyframe: np.ndarray  # bool, decode order
    time_base: Fraction

    def seconds(self, pts: np.ndarray) -> np.ndarray:
        """Exactly as PyAV's frame.time rounds them (one rounding), so ties break the same way."""
        return pts * self.time_base.numerator / self.time_base.denominator


@dataclass(frozen=True)
class DecodeRun:
    """Seek to the keyframe at `start`, decode packets up to `end` (decode order) and keep `wanted` pts."""

    start: int
    end: int
    wanted: frozenset[int]

    @property
    def packets(self) -> int:
        return self.end - self.start + 1


class IndexMismatch(Exception):
    """The demuxer did not reproduce the packet index after a seek: fall back to decoding through."""


def packet_index(path: Path) -> PacketIndex | None:
    """Packet pts and keyframe flags, read in a container of its own; None when they cannot guide seeks.

    None: a packet without pts (raw streams), no keyframe first, or a demuxing error (a damaged file
    is left to the decode-through path, which reports it).
    """
    pts: list[int] = []
    keys: list[bool] = []
    with open_video(path) as container:
        stream = container.streams.video[0]
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                if packet.pts is None:
                    return None
                pts.append(packet.pts)
                keys.append(packet.is_keyframe)
        except av.error.FFmpegError:
            return None
        time_base = Fraction(stream.time_base)
    if not pts or not keys[0]:
        return None
    return PacketIndex(np.array(pts, dtype=np.int64), np.array(keys, dtype=bool), time_base)


def choose_frames(index: PacketIndex, targets: np.ndarray, half_frame: float, keyframe_only: bool) -> list[int]:
    """The pts picked for each target: the frame shown at it (exact), or the keyframe at or before it."""
    if keyframe_only:
        key_pts = np.sort(index.pts[index.is_keyframe])
        where = np.searchsorted(index.seconds(key_pts), targets + half_frame, side="right") - 1
        return [int(key_pts[max(0, i)]) for i in where]
    shown = np.sort(index.pts)
    where = np.searchsorted(index.seconds(shown), targets - half_frame, side="left")
    return [int(shown[min(i, len(shown) - 1)]) for i in where]


def plan_runs(index: PacketIndex, wanted_pts: Sequence[int]) -> list[DecodeRun]:
    """Group the wanted frames by the keyframe they are decoded from; overlapping groups decode as one run.

    A frame shown before its keyframe (an open-GOP leading picture) needs the previous group too.
    """
    position = {int(p): i for i, p in enumerate(index.pts)}
    keyframes = np.flatnonzero(index.is_keyframe)
    spans: dict[int, list[int]] = {}
    for pts in sorted(set(wanted_pts)):
        at = position[pts]
        k = int(np.searchsorted(keyframes, at, side="right")) - 1
        if pts < index.pts[keyframes[k]] and k > 0:
            k -= 1
        spans.setdefault(int(keyframes[k]), []).append(pts)
    runs: list[DecodeRun] = []
    for start in sorted(spans):
        end = max(position[p] for p in spans[start])
        if runs and start <= runs[-1].end:
            last = runs.pop()
            runs.append(DecodeRun(last.start, max(last.end, end), last.wanted | frozenset(spans[start])))
        else:
            runs.append(DecodeRun(start, end, frozenset(spans[start])))
    return runs


def split_runs(runs: list[DecodeRun], parts: int) -> list[list[DecodeRun]]:
    """Contiguous groups of runs with about equal packets to decode, one per thread."""
    total = sum(run.packets for run in runs)
    groups: list[list[DecodeRun]] = [[]]
    done = 0
    for run in runs:
        if groups[-1] and done >= total * len(groups) / parts and len(groups) < parts:
            groups.append([])
        groups[-1].append(run)
        done += run.packets
    return groups


def decode_runs(
    container: av.container.InputContainer, index: PacketIndex, runs: Sequence[DecodeRun], size: int
) -> dict[int, tuple[np.ndarray, float]]:
    """Decode each run from its keyframe; frames nothing needs (non-reference, not wanted) are skipped."""
    stream = container.streams.video[0]
    context = stream.codec_context
    context.thread_count = 1  # parallelism comes from parts and workers; frame threads would only add latency
    found: dict[int, tuple[np.ndarray, float]] = {}

    def keep(frames: Iterable[av.VideoFrame], wanted: frozenset[int]) -> None:
        for frame in frames:
            if frame.pts in wanted and frame.pts not in found:
                found[frame.pts] = (upright_square(frame, size), float(index.seconds(np.int64(frame.pts))))

    for run in runs:
        container.seek(int(index.pts[run.start]), stream=stream, backward=True, any_frame=False)
        at = run.start
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if at == run.start and packet.pts != index.pts[run.start]:
                raise IndexMismatch(f"seek landed on pts {packet.pts}, not keyframe pts {index.pts[run.start]}")
            context.skip_frame = "DEFAULT" if packet.pts in run.wanted else "NONREF"
            keep(context.decode(packet), run.wanted)
            at += 1
            if at > run.end:
                break
        keep(context.decode(None), run.wanted)  # drain the frames still held for reordering
        context.flush_buffers()
        missing = run.wanted - found.keys()
        if missing:
            raise IndexMismatch(f"{len(missing)} wanted frame(s) never came out of the decoder")
    return found


def frames_until_damage(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Iterator:
    """Decoded frames up to the first decoding error: a cut-short file keeps the frames before the cut."""
    decoded = 0
    try:
        for frame in container.decode(stream):
            decoded += 1
            yield frame
    except av.error.FFmpegError:
        if not decoded:
            raise


def decode_at_times(
    container: av.container.InputContainer, targets: np.ndarray, size: int
) -> tuple[list[np.ndarray], list[float]]:
    """Decode every frame from the start, keeping the one shown at each target (the fallback path).

    Used when packets carry no timestamps or seeking does not land where the index says; slower, but
    it makes no assumption about the container. A frame picked for two targets is kept once.
    """
    stream = container.streams.video[0]
    stream.codec_context.thread_type = "AUTO"
    fps = frame_rate(stream)
    half_frame = 0.5 / fps
    images: list[np.ndarray] = []
    times: list[float] = []
    last_frame, last_time = None, -math.inf
    remaining = list(targets)
    for number, frame in enumerate(frames_until_damage(container, stream)):
        last_frame = frame
        last_time = frame.time if frame.time is not None else number / fps  # raw streams carry no timestamps
        if remaining and last_time >= remaining[0] - half_frame:
            while remaining and last_time >= remaining[0] - half_frame:
                remaining.pop(0)
            images.append(upright_square(frame, size))
            times.append(float(last_time))
        if not remaining:
            break
    if remaining and last_frame is not None and (not times or times[-1] != last_time):
        images.append(upright_square(last_frame, size))  # ran off the end: the last frame is the one shown
        times.append(float(last_time))
    if last_frame is None:
        raise VideoError("no decodable video frames")
    return images, times


def sample_with_index(
    path: Path,
    container: av.container.InputContainer,
    targets: np.ndarray,
    size: int,
    keyframe_only: bool,
    threads: int,
) -> tuple[list[np.ndarray], list[float]] | None:
    """Decode only what the targets need, in up to `threads` parts; None when the index is unusable."""
    index = packet_index(path)
    if index is None:
        return None
    half_frame = 0.5 / frame_rate(container.streams.video[0])
    chosen = choose_frames(index, targets, half_frame, keyframe_only)
    runs = plan_runs(index, chosen)
    worth_splitting = sum(r.packets for r in runs) >= MIN_PACKETS_TO_SPLIT or len(runs) >= MIN_RUNS_TO_SPLIT
    groups = split_runs(runs, threads) if worth_splitting else [runs]
    try:
        if len(groups) == 1:
            found = decode_runs(container, index, runs, size)
        else:

            def decode_group(group: list[DecodeRun]) -> dict[int, tuple[np.ndarray, float]]:
                with open_video(path) as own:
                    return decode_runs(own, index, group, size)

            with ThreadPoolExecutor(len(groups)) as pool:
                found = {k: v for part in pool.map(decode_group, groups) for k, v in part.items()}
    except IndexMismatch:
        return None
    if not keyframe_only:
        chosen = list(dict.fromkeys(chosen))  # a frame picked for two targets (a short video) is kept once
    return [found[p][0] for p in chosen], [found[p][1] for p in chosen]


def sample_frames(path: Path, count: int, size: int, mode: str = "exact", threads: int = 1) -> SampledFrames:
    """`count` evenly spaced frames over the real duration (fewer for a very short video).

    `exact` returns the frame shown at each target time; `keyframe` the keyframe at or before it
    (approximate: up to one keyframe interval early, but only keyframes are decoded). In keyframe
    mode, targets closer together than the keyframe interval share a keyframe, and it is returned
    once per target (`count` frames, even for a video with fewer keyframes), so a mean over the
    frames weighs that keyframe more than an exact sample would weigh any one frame.
    """
    with open_video(path) as container:
        duration = checked_duration(container)
        targets = stream_start(container.streams.video[0]) + sample_frame_times(duration, count)
        try:
            try:
                sampled = sample_with_index(path, container, targets, size, mode == "keyframe", threads)
            except av.error.FFmpegError:
                sampled = None  # damaged packets (a cut-short file): decoding through keeps what is readable
            if sampled is None:
                with open_video(path) as fresh:  # never rewind: raw streams cannot seek
                    sampled = decode_at_times(fresh, targets, size)
            images, times = sampled
        except av.error.FFmpegError as exc:
            raise VideoError(f"decoding failed ({exc.strerror or type(exc).__name__})") from exc
    if not images:
        raise VideoError("no decodable video frames")
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


def load_frame_jpegs(source: Path | BinaryIO) -> list[bytes]:
    """The JPEG bytes of every frame in a file written by save_frames (a path or bytes already read)."""
    with np.load(source) as packed:
        data, offsets = packed["jpeg"], packed["offsets"]
    return [data[offsets[i] : offsets[i + 1]].tobytes() for i in range(len(offsets) - 1)]
