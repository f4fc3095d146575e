"""The frame sampler against a plain decode of every frame: same pixels, same times, in every mode."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from clipvideo.config.schema import FramesSettings
from clipvideo.core.system import run_ffmpeg
from clipvideo.video.decode import MAX_DECODE_MEGAPIXELS, DecodeBudget, packet_index, sample_frames, upright_square
from clipvideo.video.plan import (
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
from clipvideo.video.probe import VideoError, frame_rate, stream_start

SIZE = 48


def encode(path: Path, seconds: float, fps: int, gop: int, extra: tuple[str, ...] = ()) -> Path:
    """A moving test pattern with B-frames and a fixed keyframe interval (every frame differs)."""
    run_ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=s=160x96:r={fps}",
            "-t",
            str(seconds),
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-bf",
            "3",
            "-g",
            str(gop),
            "-keyint_min",
            str(gop),
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
            *extra,
            str(path),
        ]
    )
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sampler")
    return {
        "closed_gop": encode(root / "closed.mp4", 12, 25, 25),
        "open_gop": encode(root / "open.mp4", 8, 30, 45, ("-x264-params", "open-gop=1")),
        "raw_h264": encode(root / "raw.h264", 3, 25, 25, ("-f", "h264")),
        "short": encode(root / "short.mp4", 0.4, 10, 10),
    }


def reference(path: Path, count: int) -> tuple[list[np.ndarray], list[float], list[float]]:
    """Decode every frame in order (no seeking) and keep the one shown at each target time.

    Returns the images, their times, and the times of every keyframe.
    """
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = frame_rate(stream)
        frames = [
            (i / fps if frame.time is None else frame.time, frame.key_frame, upright_square(frame, SIZE))
            for i, frame in enumerate(container.decode(stream))
        ]
        half_frame = 0.5 / fps
        duration = float(stream.duration * stream.time_base) if stream.duration else len(frames) / frame_rate(stream)
        targets = stream_start(stream) + sample_frame_times(duration, count)
    chosen: list[int] = []
    for target in targets:
        shown = next((i for i, f in enumerate(frames) if f[0] >= target - half_frame), len(frames) - 1)
        if not chosen or chosen[-1] != shown:
            chosen.append(shown)
    keyframe_times = [f[0] for f in frames if f[1]]
    return [frames[i][2] for i in chosen], [frames[i][0] for i in chosen], keyframe_times


@pytest.mark.parametrize("name", ["closed_gop", "open_gop", "raw_h264"])
@pytest.mark.parametrize("count", [5, 16, 60])
@pytest.mark.parametrize("threads", [1, 2])
def test_exact_mode_returns_the_frame_shown_at_each_target(
    videos: dict[str, Path], name: str, count: int, threads: int
) -> None:
    images, times, _ = reference(videos[name], count)
    sampled = sample_frames(videos[name], count, SIZE, "exact", threads)
    assert sampled.times == pytest.approx(times, abs=1e-6)
    assert len(sampled.images) == len(images)
    for index, (got, expected) in enumerate(zip(sampled.images, images, strict=True)):
        assert np.array_equal(got, expected), f"{name}: frame {index} at {times[index]:.3f}s differs"


def test_keyframe_mode_returns_the_keyframe_at_or_before_each_target(videos: dict[str, Path]) -> None:
    path = videos["closed_gop"]
    count = 16
    _, _, keyframe_times = reference(path, count)
    sampled = sample_frames(path, count, SIZE, "keyframe")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        targets = stream_start(stream) + sample_frame_times(float(stream.duration * stream.time_base), count)
        keyframes = {frame.time: upright_square(frame, SIZE) for frame in container.decode(stream) if frame.key_frame}
    assert len(sampled.images) == count  # one per target, repeated where two targets share a keyframe
    for target, time, image in zip(targets, sampled.times, sampled.images, strict=True):
        expected_time = max(t for t in keyframe_times if t <= target + 1e-6)
        assert time == pytest.approx(expected_time)
        assert np.array_equal(image, keyframes[expected_time])


def test_a_video_shorter_than_the_request_keeps_each_frame_once(videos: dict[str, Path]) -> None:
    sampled = sample_frames(videos["short"], 16, SIZE)
    images, times, _ = reference(videos["short"], 16)
    assert sampled.is_short
    assert len(sampled.times) == len(set(sampled.times)) == len(times) == 4
    assert all(np.array_equal(a, b) for a, b in zip(sampled.images, images, strict=True))


def test_the_packet_index_sees_every_packet_and_keyframe(videos: dict[str, Path]) -> None:
    index = packet_index(videos["closed_gop"])
    assert index is not None
    assert len(index.pts) == 12 * 25
    assert int(index.is_keyframe.sum()) == 12
    assert packet_index(videos["raw_h264"]) is None  # no timestamps: the sampler decodes through instead


def test_runs_group_targets_by_keyframe_and_threads_split_them_evenly(videos: dict[str, Path]) -> None:
    index = packet_index(videos["closed_gop"])
    assert index is not None
    display = np.sort(index.pts)
    wanted = [int(display[i]) for i in (3, 10, 30, 200)]  # two in the first group of 25, one in the 2nd, one in the 9th
    runs = plan_runs(index, wanted)
    assert [r.start for r in runs] == [0, 25, 200]
    assert [len(r.wanted) for r in runs] == [2, 1, 1]
    assert all(r.start <= r.end < r.start + 25 for r in runs)
    many = [DecodeRun(i * 10, i * 10 + 4, frozenset()) for i in range(10)]
    groups = split_runs(many, 2, planned_frames(many))
    assert [len(g) for g in groups] == [5, 5]
    assert [r for g in groups for r in g] == many


def test_the_default_decode_budget_passes_a_two_hour_1080p_video_at_100_frames() -> None:
    """The worst plans the sampler makes for 2 hours of 1920x1080 at 60 fps and 100 frames: exact frames with
    a keyframe every 10 s, and decoding through from the start (no usable index). A budget any normal video
    passes still refuses a file of 30,000 one-keyframe 8K frames (about 1.5 MB of solid colour), and its work
    per byte refuses the bomb of 1,000 such frames."""
    budget = MAX_DECODE_MEGAPIXELS
    fps, seconds, count = 60, 2 * 3600, 100
    pts = np.arange(fps * seconds, dtype=np.int64)
    index = PacketIndex(pts, pts % (10 * fps) == 0, Fraction(1, fps))
    targets = sample_frame_times(seconds, count)
    runs = plan_runs(index, choose_frames(index, targets, 0.5 / fps, keyframe_only=False))
    seek_plan = megapixels(planned_frames(runs), 1920, 1080)
    through = megapixels(frames_through(targets[-1], 0, fps), 1920, 1080)
    worst_seek_plan = megapixels(count * 10 * fps, 1920, 1080)  # each run within one keyframe interval
    assert len(runs) == count and seek_plan <= worst_seek_plan < through < budget
    assert (round(seek_plan), round(worst_seek_plan), round(through)) == (49_974, 124_416, 891_318)
    assert megapixels(30_000, 8192, 4320) > budget
    # per byte, even at 100 kbit/s (90 MB: one still picture) and decoded through: 0.0099 megapixels a byte
    for bitrate in (4_000_000, 100_000):
        for frames in (planned_frames(runs), count * 10 * fps, frames_through(targets[-1], 0, fps)):
            DecodeBudget(FramesSettings(), bitrate // 8 * seconds).plan(frames, 1920, 1080, "2 hours")  # passes
    # the decode bomb of the report: 156 KB, one keyframe and 1,000 frames of 8192x4320 (0.22 megapixels a byte)
    with pytest.raises(VideoError, match=r"at 0.22 megapixels per byte of a 156,000-byte file, over frames.max_de"):
        DecodeBudget(FramesSettings(), 156_000).plan(969, 8192, 4320, "the bomb")
