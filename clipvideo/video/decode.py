"""Decoding with PyAV: evenly spaced frames per video, upright, centre-cropped and resized.

The seek plan comes from `plan`; files are opened only through `probe`'s allow-list. What one video may cost is
bounded (`DecodeBudget`): its plan's work before decoding, and the time it takes between decoded packets.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from clipvideo.config.schema import FramesSettings
from clipvideo.video.plan import (
    MIN_PACKETS_TO_SPLIT,
    MIN_RUNS_TO_SPLIT,
    DecodeRun,
    PacketIndex,
    choose_frames,
    frames_through,
    megapixels,
    plan_runs,
    planned_frames,
    sample_frame_times,
    split_runs,
)
from clipvideo.video.probe import VideoError, checked_duration, frame_rate, open_video, stream_start, video_stream
from clipvideo.video.store import SampledFrames

THREAD_STATE = threading.local()


# Scaled to planar RGB (returned as RGB by to_ndarray): swscale's packed rgb24 output at an even width
# (every square size but odd ones) takes a fast path that darkens by about 1.5 levels of 255; gbrp
# interpolates chroma per pixel, the same bytes as rgb24 with FULL_CHR_H_INT, in a third of the time.
SCALED_FORMAT = "gbrp"
THROUGH = "decoding from the start"  # how the fallback plan decodes, as its refusal says


class DecodeTimeout(VideoError):
    """Decoding one video took longer than frames.video_timeout_s: a fact about this run, not the video."""


# frames.max_decode_megapixels and frames.max_decode_megapixels_per_byte in params.yaml, where sample_frames is
# called without them (tests, benchmarks)
MAX_DECODE_MEGAPIXELS = 1_000_000
MAX_DECODE_MEGAPIXELS_PER_BYTE = 0.05
# A plan of at most this much work passes whatever its work per byte: a short clip of a still picture is small
# for its frames (a 10 s 1280x720 title card of 8 KB plans 0.03 a byte). 0.4 to 1.5 s of CPU (docs/security.md).
FREE_DECODE_MEGAPIXELS = 1_000


class DecodeBudget:
    """What decoding one video may cost, deterministically: a plan (frames x pixels) whose work, with what this
    video has decoded already, is over frames.max_decode_megapixels, or over frames.max_decode_megapixels_per_byte
    times the file's size (beyond FREE_DECODE_MEGAPIXELS), is refused before any decoding. The frames decoded are
    counted against the same budget, once per video: a fallback plan gets what is left (a picture may also grow
    past the size the stream declared). A wall-clock backstop, frames.video_timeout_s, is checked between decoded
    packets: one packet's decoding is bounded by the picture-size cap and the codec allow-list (docs/security.md),
    so the check comes often; a thread cannot be stopped inside a decoder call."""

    clock = staticmethod(time.monotonic)

    def __init__(
        self,
        settings: FramesSettings,
        file_bytes: int,
        max_megapixels: int = MAX_DECODE_MEGAPIXELS,
        max_megapixels_per_byte: float = MAX_DECODE_MEGAPIXELS_PER_BYTE,
    ) -> None:
        self.limit = max_megapixels
        self.per_byte = max_megapixels_per_byte
        self.file_bytes = file_bytes
        self.timeout_s = settings.video_timeout_s
        self.deadline = self.clock() + settings.video_timeout_s
        self.planned = ""
        self.pixels = 0  # decoded so far by every plan of this video
        self._lock = threading.Lock()

    def over(self, work: float) -> str | None:
        """Which limit `work` (megapixels in all) is over, in words; None within both."""
        if work > self.limit:
            return f"over frames.max_decode_megapixels={self.limit:,} (params.yaml)"
        if work > max(FREE_DECODE_MEGAPIXELS, self.per_byte * self.file_bytes):
            return (
                f"at {work / self.file_bytes:.3g} megapixels per byte of a {self.file_bytes:,}-byte file, over "
                f"frames.max_decode_megapixels_per_byte={self.per_byte:g} (params.yaml)"
            )
        return None

    @property
    def spent(self) -> float:
        return self.pixels / 1e6

    def plan(self, frames: int, width: int, height: int, how: str) -> None:
        """Refuse a plan that, with what was decoded already, is over the budget."""
        work = megapixels(frames, width, height)
        self.planned = f"{work:,.1f} megapixels ({frames:,} frames of {width}x{height}, {how})"
        if self.pixels:
            self.planned += f" after {self.spent:,.1f} decoded by a plan that failed"
        limit = self.over(self.spent + work)
        if limit:
            raise VideoError(f"decoding would cost {self.planned}, {limit}")

    def spend(self, frame: av.VideoFrame) -> None:
        """Count a decoded frame against the budget."""
        with self._lock:
            self.pixels += frame.width * frame.height
            spent = self.spent
        limit = self.over(spent)
        if limit:
            raise VideoError(
                f"decoding went {limit.replace('at ', 'to ', 1)} at a {frame.width}x{frame.height} frame: the picture "
                f"grew past the size the stream declares (planned: {self.planned})"
            )

    def check_time(self) -> None:
        if self.clock() > self.deadline:
            raise DecodeTimeout(f"decoding took longer than {self.timeout_s:g} s (frames.video_timeout_s)")


def thread_reformatter() -> VideoReformatter:
    """One scaler per thread, reused across frames: building a new one for every frame costs 1-2 ms."""
    if not hasattr(THREAD_STATE, "reformatter"):
        THREAD_STATE.reformatter = VideoReformatter()
    return THREAD_STATE.reformatter


def centre_square(frame: av.VideoFrame) -> av.VideoFrame:
    """The centre square of the stored picture, by reference: FFmpeg's crop filter moves plane pointers
    and copies nothing. One graph per thread, rebuilt when the picture's size or format changes."""
    side = min(frame.width, frame.height)
    if frame.width == frame.height:
        return frame
    shape = (frame.width, frame.height, frame.format.name, int(frame.colorspace), int(frame.color_range))
    if getattr(THREAD_STATE, "crop_shape", None) != shape:
        graph = av.filter.Graph()
        source = graph.add(
            "buffer",
            video_size=f"{frame.width}x{frame.height}",
            pix_fmt=frame.format.name,
            time_base="1/1000",
            pixel_aspect="1/1",
            colorspace=str(shape[3]),
            range=str(shape[4]),
        )
        crop = graph.add("crop", f"{side}:{side}:{(frame.width - side) // 2}:{(frame.height - side) // 2}")
        sink = graph.add("buffersink")
        source.link_to(crop)
        crop.link_to(sink)
        graph.configure()
        THREAD_STATE.crop_shape, THREAD_STATE.crop_ends = shape, (source, sink, graph)
    source, sink, _ = THREAD_STATE.crop_ends
    source.push(frame)
    return sink.pull()


def upright_square(frame: av.VideoFrame, size: int) -> np.ndarray:
    """RGB at `size` x `size`: crop the centre square, scale it, rotate per the display matrix.

    Cropping first scales only what is kept: a 34000x10 picture never becomes 761600x224. A quarter
    turn maps the centre square onto itself, so the stored picture is cropped and scaled before rotating.
    """
    quarter_turns = round((frame.rotation or 0) / 90) % 4
    square = centre_square(frame)
    scaled = thread_reformatter().reformat(square, width=size, height=size, format=SCALED_FORMAT, interpolation="AREA")
    rgb = scaled.to_ndarray()
    if quarter_turns:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=quarter_turns))
    return rgb


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
        stream = video_stream(container)
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


def decode_runs(
    container: av.container.InputContainer,
    index: PacketIndex,
    runs: Sequence[DecodeRun],
    size: int,
    budget: DecodeBudget,
) -> dict[int, tuple[np.ndarray, float]]:
    """Decode each run from its keyframe; frames nothing needs (non-reference, not wanted) are skipped."""
    stream = video_stream(container)
    context = stream.codec_context
    context.thread_count = 1  # parallelism comes from parts and workers; frame threads would only add latency
    found: dict[int, tuple[np.ndarray, float]] = {}

    def keep(frames: Iterable[av.VideoFrame], wanted: frozenset[int]) -> None:
        for frame in frames:
            budget.spend(frame)
            if frame.pts in wanted and frame.pts not in found:
                found[frame.pts] = (upright_square(frame, size), float(index.seconds(np.int64(frame.pts))))

    for run in runs:
        container.seek(int(index.pts[run.start]), stream=stream, backward=True, any_frame=False)
        at = run.start
        for packet in container.demux(stream):
            budget.check_time()
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


def frames_until_damage(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, budget: DecodeBudget
) -> Iterator:
    """Decoded frames up to the first decoding error: a cut-short file keeps the frames before the cut.
    (container.decode, packet by packet, so the budget's clock is looked at between packets.)"""
    decoded = 0
    try:
        for packet in container.demux(stream):
            budget.check_time()
            for frame in packet.decode():
                budget.spend(frame)
                decoded += 1
                yield frame
    except av.error.FFmpegError:
        if not decoded:
            raise


def decode_at_times(
    container: av.container.InputContainer, targets: np.ndarray, size: int, budget: DecodeBudget
) -> tuple[list[np.ndarray], list[float]]:
    """Decode every frame from the start, keeping the one shown at each target (the fallback path).

    Used when packets carry no timestamps or seeking does not land where the index says; slower, but
    it makes no assumption about the container. A frame picked for two targets is kept once.
    """
    stream = video_stream(container)
    stream.codec_context.thread_type = "AUTO"
    fps = frame_rate(stream)
    half_frame = 0.5 / fps
    budget.plan(through_frames(stream, targets), stream.width, stream.height, THROUGH)
    images: list[np.ndarray] = []
    times: list[float] = []
    last_frame, last_time = None, -math.inf
    remaining = list(targets)
    for number, frame in enumerate(frames_until_damage(container, stream, budget)):
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


def seek_plan(
    path: Path, stream: av.video.stream.VideoStream, targets: np.ndarray, keyframe_only: bool
) -> tuple[PacketIndex, list[int], list[DecodeRun], str] | None:
    """The packet index, the pts picked for each target, the runs that decode them and how, from demuxing alone;
    None when the index is unusable (the sampler then decodes through)."""
    index = packet_index(path)
    if index is None:
        return None
    chosen = choose_frames(index, targets, 0.5 / frame_rate(stream), keyframe_only)
    how = "keyframes only" if keyframe_only else "from the keyframe before each sampled time"
    return index, chosen, plan_runs(index, chosen), how


def through_frames(stream: av.video.stream.VideoStream, targets: np.ndarray) -> int:
    """Frames the decode-through plan decodes: from the start to the one shown at the last target."""
    return frames_through(targets[-1], stream_start(stream), frame_rate(stream))


def sample_targets(container: av.container.InputContainer, path: Path, count: int) -> np.ndarray:
    return stream_start(video_stream(container)) + sample_frame_times(checked_duration(container, path), count)


def planned_work(path: Path, count: int, mode: str = "exact") -> tuple[int, int, int, str]:
    """What sampling `path` plans to decode first, without decoding: (frames, width, height, how), the numbers
    the budget judges (bench/decode_work.py). A seek plan that fails while decoding falls back to decoding
    through, which this does not foresee."""
    with open_video(path) as container:
        stream = video_stream(container)
        targets = sample_targets(container, path, count)
        plan = seek_plan(path, stream, targets, mode == "keyframe")
        frames, how = (through_frames(stream, targets), THROUGH) if plan is None else (planned_frames(plan[2]), plan[3])
        return frames, stream.width, stream.height, how


def sample_with_index(
    path: Path,
    container: av.container.InputContainer,
    targets: np.ndarray,
    size: int,
    keyframe_only: bool,
    threads: int,
    budget: DecodeBudget,
) -> tuple[list[np.ndarray], list[float]] | None:
    """Decode only what the targets need, in up to `threads` parts; None when the index is unusable."""
    stream = video_stream(container)
    plan = seek_plan(path, stream, targets, keyframe_only)
    if plan is None:
        return None
    index, chosen, runs, how = plan
    packets = planned_frames(runs)
    budget.plan(packets, stream.width, stream.height, how)
    worth_splitting = packets >= MIN_PACKETS_TO_SPLIT or len(runs) >= MIN_RUNS_TO_SPLIT
    groups = split_runs(runs, threads, packets) if worth_splitting else [runs]
    try:
        if len(groups) == 1:
            found = decode_runs(container, index, runs, size, budget)
        else:

            def decode_group(group: list[DecodeRun]) -> dict[int, tuple[np.ndarray, float]]:
                with open_video(path) as own:
                    return decode_runs(own, index, group, size, budget)

            with ThreadPoolExecutor(len(groups)) as pool:
                found = {k: v for part in pool.map(decode_group, groups) for k, v in part.items()}
    except IndexMismatch:
        return None
    if not keyframe_only:
        chosen = list(dict.fromkeys(chosen))  # a frame picked for two targets (a short video) is kept once
    return [found[p][0] for p in chosen], [found[p][1] for p in chosen]


def sample_frames(
    path: Path,
    count: int,
    size: int,
    mode: str = "exact",
    threads: int = 1,
    limits: FramesSettings | None = None,
    max_megapixels: int = MAX_DECODE_MEGAPIXELS,
    max_megapixels_per_byte: float = MAX_DECODE_MEGAPIXELS_PER_BYTE,
) -> SampledFrames:
    """`count` evenly spaced frames over the real duration (fewer for a very short video), within the decode
    budget `max_megapixels` and `max_megapixels_per_byte` of the file (frames.max_decode_megapixels and
    frames.max_decode_megapixels_per_byte) and the time limit of `limits` (settings.yaml's frames section; its
    defaults when None).

    `exact` returns the frame shown at each target time; `keyframe` the keyframe at or before it
    (approximate: up to one keyframe interval early, but only keyframes are decoded). In keyframe
    mode, targets closer together than the keyframe interval share a keyframe, and it is returned
    once per target (`count` frames, even for a video with fewer keyframes), so a mean over the
    frames weighs that keyframe more than an exact sample would weigh any one frame.
    """
    with open_video(path) as container:
        budget = DecodeBudget(limits or FramesSettings(), path.stat().st_size, max_megapixels, max_megapixels_per_byte)
        targets = sample_targets(container, path, count)
        try:
            try:
                sampled = sample_with_index(path, container, targets, size, mode == "keyframe", threads, budget)
            except av.error.FFmpegError:
                sampled = None  # damaged packets (a cut-short file): decoding through keeps what is readable
            if sampled is None:
                with open_video(path) as fresh:  # never rewind: raw streams cannot seek
                    sampled = decode_at_times(fresh, targets, size, budget)
            images, times = sampled
        except av.error.FFmpegError as exc:
            raise VideoError(f"decoding failed ({exc.strerror or type(exc).__name__})") from exc
    if not images:
        raise VideoError("no decodable video frames")
    return SampledFrames(images=images, times=times, requested=count)
