"""Probing an untrusted file: only single-file video demuxers on the local disk, from the stream the ffmpeg CLI
would pick, only the decoders of real video codecs, and only pictures of a size a real video has, so one file
costs a bounded amount of memory and one packet a bounded amount of decoding.

Every `av.open` of the project goes through `open_container`.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
from av.stream import Disposition

# The demuxers a file may be read with (FFmpeg's names): containers that hold their own packets, every
# format yt-dlp saves as one file. Never concat, hls, dash, image sequences (image2, *_pipe), subfile or
# anything else that opens other files or urls it names: a 47-byte ffconcat file would become another
# video's frames. Audio-only mp3 is read to say "no video stream".
VIDEO_DEMUXERS = frozenset(
    {
        "mov,mp4,m4a,3gp,3g2,mj2",
        "matroska,webm",
        "avi",
        "flv",
        "mpegts",
        "mpeg",
        "ogg",
        "asf",
        "ivf",
        "h264",
        "hevc",
        "m4v",
        "mp3",
    }
)
SINGLE_FILE_ONLY = {"format_whitelist": ",".join(sorted(VIDEO_DEMUXERS)), "protocol_whitelist": "file"}
# Pictures larger than DCI 8K (8192x4320, 35.4 Mpx: every camera and YouTube resolution fits) are refused
# from the size the stream declares, before decoding: a 16000x16000 PNG frame alone is 768 MB of RGB.
MAX_SIDE = 8192
MAX_PIXELS = 8192 * 4320
# The decoders a file may use (FFmpeg's names): the video codecs cameras, phones and video sites store, and PNG
# (a still picture stored as video). A packet of one of them decodes to at most one picture within the size cap
# below; FFmpeg's hundreds of other decoders (game, screen-capture and image formats with compression schemes of
# their own) are never opened on an untrusted file. The audio decoders only let FFmpeg's probing read audio
# streams as before: the sampler never decodes audio.
VIDEO_DECODERS = frozenset(
    {
        "h264",
        "hevc",
        "vp8",
        "vp9",
        "libdav1d",
        "av1",
        "mpeg4",
        "mpeg2video",
        "mpeg1video",
        "h263",
        "flv",
        "vp6f",
        "theora",
        "wmv1",
        "wmv2",
        "wmv3",
        "vc1",
        "msmpeg4",
        "mjpeg",
        "png",
    }
)
AUDIO_DECODERS = frozenset({"aac", "mp3", "mp3float", "opus", "libopus", "vorbis", "flac", "ac3", "eac3"})
# The decoders' own cap (FFmpeg checks the width padded to its stride alignment, up to 64 px): it also
# holds while FFmpeg probes the file and when a picture's size changes mid-stream; and the allow-list, which
# FFmpeg enforces when it opens a decoder.
DECODER_LIMITS = {
    "max_pixels": str(MAX_PIXELS + 64 * MAX_SIDE),
    "codec_whitelist": ",".join(sorted(VIDEO_DECODERS | AUDIO_DECODERS)),
}


class VideoError(Exception):
    """A video that cannot be used; the message is the reason recorded in frames.csv."""


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
        if stream.codec_context.name not in VIDEO_DECODERS:  # FFmpeg would refuse it too, saying less
            raise VideoError(
                f"video codec {stream.codec_context.name} is not one the sampler decodes (allowed: "
                f"{', '.join(sorted(VIDEO_DECODERS))})"
            )
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
