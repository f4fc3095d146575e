"""Decode work per byte: what the sampler plans to decode for real encodes of several kinds, against decode bombs.

Each file is generated once with ffmpeg into bench/.cache/ (about 5 minutes of CPU the first time, most of it
the 8K bomb); then, without decoding, the frames the sampler plans for 16 and 100 exact frames (the plan the
budget judges: `planned_work`), in megapixels and in megapixels per byte of the file, and whether the default
budget passes it. The table is the one in docs/security.md, where frames.max_decode_megapixels_per_byte is
chosen from it.

    python bench/decode_work.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import CACHE, machine, table

from clipvideo.config.schema import FramesSettings
from clipvideo.core.files import atomic_path
from clipvideo.core.system import run_ffmpeg
from clipvideo.video.decode import DecodeBudget, planned_work
from clipvideo.video.plan import megapixels
from clipvideo.video.probe import open_video, video_duration, video_stream

X264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"]
ONE_GOP = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "100000", "-keyint_min", "100000", "-sc_threshold", "0"]
MOTION = "testsrc2=s={s}:r={r},noise=alls=24:allf=t+u"  # a moving pattern with grain in every frame


def lavfi(source: str, seconds: int) -> list[str]:
    """ffmpeg input arguments: `seconds` of a generated lavfi source."""
    return ["-f", "lavfi", "-i", source, "-t", str(seconds)]


# (kind, file name, ffmpeg arguments before the output)
KINDS = [
    (
        "static slideshow (a picture every 5 s)",
        "slideshow-1080p.mp4",
        [*lavfi("mandelbrot=s=1920x1080:r=0.2,fps=25", 60), *X264],
    ),
    (
        "static slides (flat graphics, a slide every 5 s)",
        "slides-1080p.mp4",
        [*lavfi("testsrc2=s=1920x1080:r=0.2,fps=25", 60), *X264],
    ),
    (
        "screen recording (static desktop, one moving window)",
        "screen-1080p.mp4",
        [
            "-f",
            "lavfi",
            "-i",
            "smptehdbars=s=1920x1080:r=30",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x240:r=30",
            "-filter_complex",
            "[0][1]overlay=200:150",
            "-t",
            "60",
            *X264,
        ],
    ),
    (
        "high motion with grain (sports-like)",
        "motion-1080p.mp4",
        [*lavfi(MOTION.format(s="1920x1080", r=25), 20), *X264],
    ),
    (
        "H.264 at 4 Mbit/s",
        "h264-4mbit-1080p.mp4",
        [
            *lavfi(MOTION.format(s="1920x1080", r=25), 60),
            *X264[:4],
            "-b:v",
            "4M",
            "-maxrate",
            "4M",
            "-bufsize",
            "8M",
            "-pix_fmt",
            "yuv420p",
        ],
    ),
    (
        "4K high motion",
        "motion-2160p.mp4",
        [
            *lavfi(MOTION.format(s="3840x2160", r=30), 10),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-crf",
            "23",
            "-pix_fmt",
            "yuv420p",
        ],
    ),
    (
        "VP9 (libvpx, 2 Mbit/s)",
        "vp9-1080p.webm",
        [
            *lavfi(MOTION.format(s="1920x1080", r=25), 20),
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "2M",
        ],
    ),
    (
        "AV1 (SVT-AV1)",
        "av1-1080p.mp4",
        [
            *lavfi(MOTION.format(s="1920x1080", r=25), 20),
            "-c:v",
            "libsvtav1",
            "-preset",
            "12",
            "-crf",
            "35",
        ],
    ),
    (
        "title card (solid colour, one keyframe)",
        "card-720p.mp4",
        ["-f", "lavfi", "-i", "color=red:s=1280x720:r=25:d=10", *ONE_GOP],
    ),
    (
        "decode bomb (solid colour, one keyframe, 1,000 frames)",
        "bomb-2048x1080.mp4",
        ["-f", "lavfi", "-i", "color=red:s=2048x1080:r=25:d=40", *ONE_GOP],
    ),
    (
        "decode bomb (solid colour, one keyframe, 1,000 frames)",
        "bomb-8192x4320.mp4",
        ["-f", "lavfi", "-i", "color=red:s=8192x4320:r=25:d=40", *ONE_GOP],
    ),
]
LONG_STATIC = "static-1080p-2h.mp4"


def generated(name: str, args: list[str]) -> Path:
    path = CACHE / "decode-work" / name
    if not path.is_file():
        print(f"generating {name} (cached for later runs) ...", file=sys.stderr, flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            run_ffmpeg([*args, "-an", "-f", path.suffix.lstrip("."), str(tmp)], timeout_s=3600)
    return path


def long_static() -> Path:
    """2 hours of one still 1080p picture, 25 fps, a keyframe every 10 s: one 10 s GOP copied 720 times
    (what an encoder makes of a static picture; stream copy, so it costs seconds, not an hour of encoding)."""
    still = ["-f", "lavfi", "-i", "mandelbrot=s=1920x1080:r=0.1,fps=25", "-t", "10", *X264, "-g", "250"]
    gop = generated("static-1080p-10s.mp4", still)
    listing = gop.with_suffix(".txt")
    listing.write_text("ffconcat version 1.0\n" + f"file {gop.name}\n" * 720)
    return generated(LONG_STATIC, ["-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy"])


def row(kind: str, path: Path) -> list[object]:
    with open_video(path) as container:
        stream = video_stream(container)
        codec, size = stream.codec_context.name, f"{stream.width}x{stream.height}"
    size_bytes = path.stat().st_size
    cells: list[object] = [kind, codec, size, f"{video_duration(path):,.0f} s", f"{size_bytes:,}"]
    verdicts = []
    for count in (16, 100):
        frames, width, height, _ = planned_work(path, count)
        work = megapixels(frames, width, height)
        cells += [f"{work:,.0f}", f"{work / size_bytes:.2g}"]
        verdicts.append("refused" if DecodeBudget(FramesSettings(), size_bytes).over(work) else "passes")
    return [*cells, " / ".join(verdicts)]


def main() -> None:
    rows = [row(kind, generated(name, args)) for kind, name, args in KINDS[:-3]]
    rows.append(row("long static, low bit rate (one picture)", long_static()))
    rows += [row(kind, generated(name, args)) for kind, name, args in KINDS[-3:]]
    headers = [
        "kind",
        "codec",
        "picture",
        "duration",
        "bytes",
        "planned Mpx, 16 frames",
        "Mpx per byte",
        "planned Mpx, 100 frames",
        "Mpx per byte",
        "default budget (16 / 100)",
    ]
    print(table(headers, rows))
    print(f"\n{machine()}")


if __name__ == "__main__":
    main()
