"""Decoding: evenly spaced frames per video, upright, centre-cropped and resized, one file per video.

Frames are stored as JPEG bytes packed into one `.npz` per video (about 15-30 KB a frame at
224 px), so thousands of videos stay thousands of files, never hundreds of thousands.

Every file is untrusted: it is read only by single-file video demuxers from the local disk (never a
playlist or anything else that opens other files or urls), from the stream the ffmpeg CLI would pick,
and only when its pictures are of a size a real video has, so one file costs a bounded amount of memory.
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
from av.stream import Disposition
from av.video.reformatter import VideoReformatter
from PIL import Image

from clipvideo.files import atomic_path

# Split a video across threads only when there is this much to decode (opening it twice costs too).
MIN_PACKETS_TO_SPLIT = 600
MIN_RUNS_TO_SPLIT = 8
JPEG_QUALITY = 90
THREAD_STATE = threading.local()

# The demuxers a file may be read with (FFmpeg's names): containers that hold their own packets, every
# format yt-dlp saves as one file. Never concat, hls, dash, image sequences (image2, *_pipe), subfile or
# anything else that opens other files or urls it names: a 47-byte ffconcat file would become another
# video's frames. Audio-only mp3 is read to say "no video stream".
VIDEO_DEMUXERS = frozenset({
    "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "flv", "mpegts", "mpeg", "ogg", "asf", "ivf",
    "h264", "hevc", "m4v", "mp3",
})  # fmt: skip
SINGLE_FILE_ONLY = {"format_whitelist": ",".join(sorted(VIDEO_DEMUXERS)), "protocol_whitelist": "file"}
# Pictures larger than DCI 8K (8192x4320, 35.4 Mpx: every camera and YouTube resolution fits) are refused
# from the size the stream declares, before decoding: a 16000x16000 PNG frame alone is 768 MB of RGB.
MAX_SIDE = 8192
MAX_PIXELS = 8192 * 4320
# The decoders' own cap (FFmpeg checks the width padded to its stride alignment, up to 64 px): it also
# holds while FFmpeg probes the file and when a picture's size changes mid-stream.
DECODER_LIMITS = {"max_pixels": str(MAX_PIXELS + 64 * MAX_SIDE)}


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
# Text files FFmpeg would follow to other files or urls, by how they start (after blanks, in lower case).
PLAYLIST_STARTS = (
    (b"ffconcat version", "an ffconcat playlist that refers to other files"),
    (b"#extm3u", "an HLS playlist (.m3u8 text) that refers to other files or urls"),
    (b"v=0", "an SDP session description (it points at network streams)"),
)
# Files of other kinds saved in place of a video, by their leading bytes.
OTHER_SIGNATURES = (
    (0, b"\x89PNG", "a PNG image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"GIF8", "a GIF image"),
    (8, b"WEBP", "a WebP image"),
    (0, b"II*\x00", "a TIFF image"),
    (0, b"MM\x00*", "a TIFF image"),
    (8, b"WAVE", "WAV audio"),
    (0, b"fLaC", "FLAC audio"),
)
TEXT_PAGE_STARTS = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"{")


def describe_unreadable(path: Path) -> str:
    """Why a non-empty file is not read as a video container, told from its first bytes."""
    with path.open("rb") as handle:
        head = handle.read(1024)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for start, kind in PLAYLIST_STARTS:
        if text.startswith(start):
            return f"not a video: {kind}"
    if b"<mpd" in text:
        return "not a video: a DASH manifest (.mpd XML) that refers to other files or urls"
    if text.startswith(TEXT_PAGE_STARTS):
        return "not a video: the file is a text/HTML page (an error or login page saved in place of the video?)"
    for offset, magic, kind in OTHER_SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return f"not a video: {kind}"
    for offset, magic, kind in CONTAINER_SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return f"damaged or incomplete {kind} file: it starts like one but its index cannot be read (cut short?)"
    return "not a readable video container (unknown format)"


def open_container(path: Path, decoder_options: dict[str, str]) -> av.container.InputContainer:
    """Open a local file with a single-file video demuxer only (the allow-list, checked twice)."""
    try:
        container = av.open(
            f"file:{path}", options=decoder_options, container_options=SINGLE_FILE_ONLY, metadata_errors="ignore"
        )
    except av.error.FFmpegError as exc:
        raise VideoError(describe_unreadable(path)) from exc
    if container.format.name not in VIDEO_DEMUXERS:  # FFmpeg enforces the allow-list; this keeps it so
        container.close()
        raise VideoError(describe_unreadable(path))
    return container


def is_cover(stream: av.video.stream.VideoStream) -> bool:
    """An attached picture (cover art): one still image stored as a video stream."""
    return bool(stream.disposition & Disposition.attached_pic)


def video_streams(container: av.container.InputContainer) -> list[av.video.stream.VideoStream]:
    """The video streams that are videos and that this FFmpeg can decode."""
    return [s for s in container.streams.video if not is_cover(s) and s.codec_context is not None]


def no_video_reason(container: av.container.InputContainer) -> str:
    kinds = sorted({s.type for s in container.streams if s.type != "video"})
    if any(is_cover(s) for s in container.streams.video):
        kinds.append("a cover picture")
    if any(not is_cover(s) and s.codec_context is None for s in container.streams.video):
        kinds.append("video in a codec this FFmpeg cannot decode")
    return f"no video stream (has: {', '.join(kinds or ['no streams'])})"


def video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The stream the ffmpeg CLI picks: the largest picture, the first among equals.

    Not av_find_best_stream (PyAV's streams.best): it prefers the stream marked default, so a file
    with a small default stream and a larger one would be sampled at the small size.
    """
    return max(video_streams(container), key=lambda stream: stream.width * stream.height)


def declared_frame_size(path: Path) -> tuple[int, int]:
    """The picture size the container and stream headers state, read with every decoder refused.

    FFmpeg probes a stream by decoding a few packets and zeroes a size the capped decoder refuses;
    without decoders it keeps what the headers say, at no cost.
    """
    with open_container(path, {"codec_whitelist": "none"}) as container:
        stream = video_stream(container)
        return stream.width, stream.height


def check_frame_size(stream: av.video.stream.VideoStream, path: Path) -> None:
    """Refuse pictures no real video has before decoding one (a size still unknown is left to the decoder's cap)."""
    width, height = stream.width, stream.height
    if not (width and height):
        width, height = declared_frame_size(path)
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        limit = f"{MAX_SIDE} px a side and {MAX_PIXELS / 1e6:.1f} megapixels (DCI 8K, 8192x4320)"
        raise VideoError(f"frame size {width}x{height} is over the limit of {limit}")


def open_video(path: Path) -> av.container.InputContainer:
    """Open a video file, or raise VideoError with a reason a person understands."""
    if not path.is_file():
        raise VideoError(f"file not found: {path.name}")
    if path.stat().st_size == 0:
        raise VideoError("empty file (0 bytes)")
    container = open_container(path, DECODER_LIMITS)
    try:
        if not video_streams(container):
            raise VideoError(no_video_reason(container))
        stream = video_stream(container)
        check_frame_size(stream, path)
        stream.codec_context.options = {**stream.codec_context.options, **DECODER_LIMITS}
    except VideoError:
        container.close()
        raise
    return container


def frame_rate(stream: av.video.stream.VideoStream) -> float:
    """Frames per second as declared or guessed by the demuxer (25 when neither knows)."""
    return float(stream.average_rate or stream.guessed_rate or 25)


def stream_start(stream: av.video.stream.VideoStream) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def demuxed_duration(path: Path) -> float | None:
    """Duration by reading every packet (no decoding) in a separate container, so the caller's
    container is never rewound (raw elementary streams cannot seek): the last packet's end, or
    the packet count over the frame rate when packets carry no timestamps at all."""
    with open_video(path) as container:
        stream = video_stream(container)
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


def stream_duration(container: av.container.InputContainer, path: Path) -> float | None:
    """Duration from the stream, else the container, else by demuxing packets (no decoding)."""
    stream = video_stream(container)
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base - max(0.0, stream_start(stream))
    return demuxed_duration(path)


def checked_duration(container: av.container.InputContainer, path: Path) -> float:
    duration = stream_duration(container, path)
    if not duration or duration <= 0 or not math.isfinite(duration):
        raise VideoError("no duration: the container reports none and it has no readable video packets")
    return duration


def video_duration(path: Path) -> float:
    with open_video(path) as container:
        return checked_duration(container, path)


# Scaled to planar RGB (returned as RGB by to_ndarray): swscale's packed rgb24 output at an even width
# (every square size but odd ones) takes a fast path that darkens by about 1.5 levels of 255; gbrp
# interpolates chroma per pixel, the same bytes as rgb24 with FULL_CHR_H_INT, in a third of the time.
SCALED_FORMAT = "gbrp"


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
    stream = video_stream(container)
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
    stream = video_stream(container)
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
    half_frame = 0.5 / frame_rate(video_stream(container))
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
        duration = checked_duration(container, path)
        targets = stream_start(video_stream(container)) + sample_frame_times(duration, count)
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
