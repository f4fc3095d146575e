"""Messy real-world videos, generated with ffmpeg: each ends `ok`, `short` or `error` with a reason.

Most clips are a "clock": grey frames whose brightness encodes their own presentation time
(luma = 16 + 80 * t), so a sampled frame's pixels say which moment of the video it really shows.
"""

from __future__ import annotations

import csv
import random
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from clipvideo.core.contracts import VIDEOS_COLUMNS
from clipvideo.core.ids import url_id
from clipvideo.core.system import run_ffmpeg
from clipvideo.core.tables import write_table
from clipvideo.video import frames as frames_step
from clipvideo.video.decode import sample_frames, upright_square
from clipvideo.video.probe import VideoError, stream_start, video_duration
from stages import frames
from tests.conftest import write_params

SIZE = 64
COUNT = 8
LOSSLESS_444 = ["-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p"]  # every pixel decodes as drawn
CLOCK = "color=black:s={size}:r={fps}:d={seconds},format=yuv444p,geq=lum='16+T*80':cb=128:cr=128"


def clock(size: str = "128x96", fps: int = 25, seconds: float = 2) -> list[str]:
    return ["-f", "lavfi", "-i", CLOCK.format(size=size, fps=fps, seconds=seconds)]


def encoded_time(image: np.ndarray) -> float:
    """The presentation time a clock frame shows (RGB back to limited-range luma; clips last <= 2.5 s)."""
    return (float(image.mean()) * 219 / 255) / 80


def render(directory: Path, name: str, args: list[str]) -> Path:
    path = directory / name
    run_ffmpeg([*args, str(path)])
    return path


# name -> ffmpeg arguments (before the output path) of a video that must end `ok` with correct frames
GOOD_VIDEOS = {
    "odd_dimensions.mp4": [*clock("321x241"), *LOSSLESS_444],
    "yuv444.mp4": [*clock(), *LOSSLESS_444],
    "ten_bit.mp4": [*clock(), "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p10le"],
    "vp9.webm": [*clock(), "-c:v", "libvpx-vp9", "-crf", "4", "-b:v", "0", "-deadline", "realtime"],
    "mpeg4.avi": [*clock(), "-c:v", "mpeg4", "-q:v", "1"],
    "h264_audio.mkv": [*clock(), "-f", "lavfi", "-i", "sine=d=2", "-c:v", "libx264", "-qp", "0", "-c:a", "aac"],
    # 25 fps for the first second, then 5 fps: timestamps, not frame counts, decide
    "variable_rate.mp4": [
        *clock(),
        "-vf",
        "select='lt(n\\,25)+not(mod(n\\,5))'",
        "-fps_mode",
        "vfr",
        "-c:v",
        "libx264",
        "-qp",
        "0",
    ],
    # no duration anywhere and no timestamps at all: a raw H.264 elementary stream (cannot seek)
    "no_duration.h264": [*clock(), "-c:v", "libx264", "-qp", "0", "-f", "h264"],
    # MPEG-TS starts at 1.4 s and has one keyframe: seeking lands on no decodable frame
    "one_gop.ts": [*clock(), "-c:v", "libx264", "-qp", "0", "-g", "250", "-f", "mpegts"],
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every odd video of this module, rendered once."""
    directory = tmp_path_factory.mktemp("odd-videos")
    for name, args in GOOD_VIDEOS.items():
        render(directory, name, args)
    render(directory, "six_frames.mp4", [*clock(), "-frames:v", "6", "-c:v", "libx264", "-qp", "0"])
    render(directory, "one_frame.mp4", [*clock(), "-frames:v", "1", "-c:v", "libx264", "-qp", "0"])
    render(directory, "audio_only.m4a", ["-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac", "-f", "mp4"])
    (directory / "empty.mp4").write_bytes(b"")
    # an MP4 whose index (moov) is written last, cut in half: the index is gone
    whole = render(directory, "whole.mp4", [*clock(), "-c:v", "libx264", "-qp", "0"]).read_bytes()
    (directory / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    # with the index first (+faststart), a cut-short file still decodes up to the cut
    busy = ["-f", "lavfi", "-i", "testsrc2=s=128x96:r=25:d=2", "-c:v", "libx264", "-crf", "18", "-g", "10"]
    faststart = render(directory, "faststart.mp4", [*busy, "-movflags", "+faststart"])
    (directory / "truncated_faststart.mp4").write_bytes(faststart.read_bytes()[: faststart.stat().st_size // 2])
    (directory / "page.mp4").write_text(
        "<!DOCTYPE html>\n<html><head><title>Video unavailable</title></head><body>Private video</body></html>\n"
    )
    (directory / "random.mp4").write_bytes(b"\x00junk" + random.Random(5).randbytes(20_000))
    return directory


@pytest.mark.parametrize("name", sorted(GOOD_VIDEOS))
def test_odd_video_gives_the_frames_at_the_sampled_times(videos: Path, name: str):
    path = videos / name
    sampled = sample_frames(path, COUNT, SIZE)
    assert not sampled.is_short and len(sampled.images) == COUNT
    assert all(image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8 for image in sampled.images)
    assert np.all(np.diff(sampled.times) > 0)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = stream_start(stream)
        shown = [start + i * 0.04 if f.time is None else f.time for i, f in enumerate(container.decode(stream))]
    # evenly spaced over the duration the container declares (for VFR, the last frame's length is its say)
    targets = start + (np.arange(COUNT) + 0.5) * video_duration(path) / COUNT
    for image, time, target in zip(sampled.images, sampled.times, targets, strict=True):
        # the pixels show the moment the timestamp says ...
        assert encoded_time(image) == pytest.approx(time - start, abs=0.02), name
        # ... and that moment is a real frame, the one on screen at the target (give or take half
        # a frame), not one picked by counting frames
        assert min(abs(t - time) for t in shown) < 1e-6, name
        earliest = max(t for t in shown if t <= target - 0.02 + 1e-6)
        latest = min((t for t in shown if t >= target + 0.02 - 1e-6), default=shown[-1])
        assert earliest - 1e-6 <= time <= latest + 1e-6, (name, time, target)


@pytest.mark.parametrize(("name", "decodable"), [("six_frames.mp4", 6), ("one_frame.mp4", 1)])
def test_video_with_fewer_frames_than_asked_is_short_with_every_frame_once(videos: Path, name: str, decodable: int):
    sampled = sample_frames(videos / name, 16, SIZE)
    assert sampled.is_short and len(sampled.images) == decodable
    assert sampled.times == pytest.approx([i * 0.04 for i in range(decodable)])
    assert [encoded_time(image) for image in sampled.images] == pytest.approx(sampled.times, abs=0.02)


def test_cut_short_video_keeps_the_frames_before_the_cut(videos: Path):
    sampled = sample_frames(videos / "truncated_faststart.mp4", 16, SIZE)
    assert sampled.is_short and 2 <= len(sampled.images) < 16
    with av.open(str(videos / "faststart.mp4")) as container:
        whole = {round(f.time, 3): upright_square(f, SIZE) for f in container.decode(video=0)}
    for image, time in zip(sampled.images, sampled.times, strict=True):
        assert np.array_equal(image, whole[round(time, 3)])


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("audio_only.m4a", "no video stream (has: audio)"),
        ("empty.mp4", "empty file (0 bytes)"),
        ("truncated.mp4", "damaged or incomplete MP4/MOV file"),
        ("page.mp4", "not a video: the file is a text/HTML page"),
        ("random.mp4", "not a readable video container (unknown format)"),
    ],
)
def test_unusable_file_is_an_error_with_its_own_reason(videos: Path, name: str, reason: str):
    assert_refused(videos / name, reason)


def assert_refused(path: Path, reason: str) -> None:
    """The sampler raises VideoError and its message (the frames.csv reason) starts with `reason`."""
    with pytest.raises(VideoError) as caught:
        sample_frames(path, COUNT, SIZE)
    assert str(caught.value).startswith(reason), caught.value


def grey_with_boxes(size: str, boxes: str) -> list[str]:
    """ffmpeg arguments: one second of grey at `size` with `boxes` (drawbox filters) drawn, encoded losslessly."""
    return ["-f", "lavfi", "-i", f"color=c=gray:s={size}:r=10:d=1", "-vf", boxes, *LOSSLESS_444]


def corner_pattern(directory: Path) -> Path:
    """Grey 320x240 with a red box top-left and a blue box top-right: every rotation looks different."""
    boxes = "drawbox=x=0:y=0:w=100:h=80:c=red:t=fill,drawbox=x=220:y=0:w=100:h=80:c=blue:t=fill"
    return render(
        directory,
        "corners.mp4",
        grey_with_boxes("320x240", boxes),
    )


def ffmpeg_upright(path: Path, size: int) -> np.ndarray:
    """The ffmpeg CLI's own autorotated first frame, scaled and centre-cropped like ours."""
    png = path.with_suffix(".png")
    run_ffmpeg(["-i", str(path), "-frames:v", "1", str(png)])
    picture = Image.open(png).convert("RGB")
    scale = size / min(picture.size)
    width, height = round(picture.width * scale), round(picture.height * scale)
    array = np.asarray(picture.resize((width, height), Image.Resampling.BOX))
    top, left = (height - size) // 2, (width - size) // 2
    return array[top : top + size, left : left + size]


def box_centre(image: np.ndarray, colour: tuple[int, int, int]) -> tuple[float, float]:
    """(row, column) of the pixels close to `colour`, as fractions of the image."""
    mask = np.abs(image.astype(int) - colour).sum(axis=2) < 90
    assert mask.sum() > 10
    rows, cols = np.nonzero(mask)
    return rows.mean() / image.shape[0], cols.mean() / image.shape[1]


@pytest.mark.parametrize(("rotation", "red_at"), [(90, "bottom-left"), (-90, "top-right"), (180, "bottom-right")])
def test_rotation_metadata_gives_upright_frames_like_the_ffmpeg_cli(tmp_path: Path, rotation: int, red_at: str):
    source = corner_pattern(tmp_path)
    rotated = render(
        tmp_path, f"rotated{rotation}.mp4", ["-display_rotation", str(rotation), "-i", str(source), "-c", "copy"]
    )
    with av.open(str(rotated)) as container:
        frame = next(container.decode(video=0))
        assert frame.rotation % 360 == rotation % 360  # the metadata is there, the pixels are not rotated
        assert (frame.width, frame.height) == (320, 240)
        ours = upright_square(frame, 96)
    assert ours.shape == (96, 96, 3)
    assert np.abs(ours.astype(int) - ffmpeg_upright(rotated, 96)).mean() < 3
    row, col = box_centre(ours, (255, 0, 0))
    vertical, horizontal = red_at.split("-")
    assert (row > 0.5) == (vertical == "bottom") and (col > 0.5) == (horizontal == "right")


def test_portrait_video_is_scaled_by_its_short_side_and_centre_cropped(tmp_path: Path):
    boxes = "drawbox=x=0:y=0:w=240:h=40:c=red:t=fill,drawbox=x=0:y=140:w=120:h=40:c=blue:t=fill"
    path = render(
        tmp_path,
        "portrait.mp4",
        grey_with_boxes("240x320", boxes),
    )
    image = sample_frames(path, 1, 96).images[0]
    assert image.shape == (96, 96, 3)
    assert np.abs(image.astype(int) - ffmpeg_upright(path, 96)).mean() < 3
    # the red band at the very top is cropped away; the blue box sits in the middle row, on the left
    assert not (np.abs(image.astype(int) - (255, 0, 0)).sum(axis=2) < 90).any()
    row, col = box_centre(image, (0, 0, 255))
    assert 0.4 < row < 0.6 and col < 0.5


def run_frames_stage(root: Path, sources: dict[str, Path], overrides: dict | None = None) -> dict[str, dict[str, str]]:
    """The real frames stage on a project whose data/videos holds these files, each stored under the id
    `url_id(name)` as the download stage stores it; returns the frames.csv rows by name."""
    video_dir = root / "data" / "videos"
    video_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, source in sources.items():
        stored = f"data/videos/{url_id(name)}{Path(name).suffix}"
        shutil.copyfile(source, root / stored)
        rows.append(
            {
                "id": url_id(name),
                "category": "food",
                "status": "ok",
                "reason": "",
                "path": stored,
                "bytes": 0,
                "duration_s": "",
            }
        )
    write_table(root / "data" / "videos.csv", VIDEOS_COLUMNS, rows)
    write_params(root, {"frames_count": COUNT, "frames.size": SIZE, "frames.min_videos": 1, **(overrides or {})})
    assert frames.main(["--root", str(root)]) == 0
    with (root / "data" / "frames.csv").open(newline="") as handle:
        by_id = {row["id"]: row for row in csv.DictReader(handle)}
    return {name: by_id[url_id(name)] for name in sources}


def test_frames_stage_records_every_odd_video_and_carries_on(tmp_path: Path, videos: Path):
    """All of the above in one videos.csv: the stage finishes and frames.csv says what happened to each."""
    root = tmp_path / "project"
    names = sorted(p.name for p in videos.iterdir() if p.name not in ("whole.mp4", "faststart.mp4"))
    result = run_frames_stage(root, {name: videos / name for name in names})
    status = {name: result[name]["status"] for name in names}
    assert status == {
        **dict.fromkeys(GOOD_VIDEOS, "ok"),
        "six_frames.mp4": "short",
        "one_frame.mp4": "short",
        "truncated_faststart.mp4": "short",
        "audio_only.m4a": "error",
        "empty.mp4": "error",
        "truncated.mp4": "error",
        "page.mp4": "error",
        "random.mp4": "error",
    }
    assert result["six_frames.mp4"]["reason"] == f"6 of {COUNT} frames decodable"
    errors = {result[name]["reason"] for name in names if status[name] == "error"}
    assert len(errors) == 5 and all("\n" not in reason for reason in errors)
    stored = sorted(p.name for p in (root / "data" / "frames").glob("*.npz"))
    assert stored == sorted(f"{url_id(name)}.npz" for name in names if status[name] != "error")
    assert list(root.rglob("*.tmp")) == []


def test_an_unforeseen_decoder_exception_is_an_error_row_and_the_stage_carries_on(project, shrunk_params, capsys):
    write_params(project.root, shrunk_params)
    with project.videos_table.open(newline="") as handle:
        victim = next(csv.DictReader(handle))["id"]

    def sample_or_crash(path: Path, *args, **kwargs):
        """The real sampler, except for one video (the only fake: an exception PyAV might raise)."""
        if path.stem == victim:
            raise ValueError("unsupported pixel format\nsecond line")
        return sample_frames(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(frames_step, "sample_frames", sample_or_crash)
        assert frames.main(["--root", str(project.root)]) == 0
    with project.frames_table.open(newline="") as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    assert rows[victim]["status"] == "error"
    assert rows[victim]["reason"] == "decoder failure (ValueError: unsupported pixel format second line)"
    assert sum(row["status"] == "ok" for row in rows.values()) == len(rows) - 1
