"""Untrusted media, generated with ffmpeg: files that would make FFmpeg read other files, pick the wrong
picture or cost hundreds of megabytes; each is sampled safely or refused with what it is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from clipvideo.config.loading import load_params
from clipvideo.config.schema import FramesSettings
from clipvideo.core.ids import url_id
from clipvideo.video.decode import DecodeBudget, planned_work, sample_frames
from clipvideo.video.frames import decode_video
from clipvideo.video.plan import megapixels
from clipvideo.video.probe import DECODER_LIMITS, VideoError, is_cover, open_video, video_stream
from tests.conftest import REPO, write_params
from tests.test_odd_videos import COUNT, SIZE, assert_refused, render, run_frames_stage

RED, GREEN, BLUE = (255, 0, 0), (0, 128, 0), (0, 0, 255)
SHORT_CLIP = ["-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p"]


def colour(name: str, size: str, seconds: float = 2) -> list[str]:
    return ["-f", "lavfi", "-i", f"color={name}:s={size}:r=25:d={seconds}"]


def ffconcat_to(video_name: str) -> bytes:
    """A 40-byte ffconcat playlist: FFmpeg reads it as the video it names (with that video's frames)."""
    return f"ffconcat version 1.0\nfile {video_name}\n".encode()


def hls_playlist(segment_name: str) -> bytes:
    """A finished (VOD) HLS playlist of one local MPEG-TS segment."""
    return (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        f"#EXTINF:2.0,\n{segment_name}\n#EXT-X-ENDLIST\n"
    ).encode()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every file of this module, rendered once."""
    directory = tmp_path_factory.mktemp("untrusted")
    render(directory, "target.mp4", [*colour("red", "160x96"), *SHORT_CLIP])
    (directory / "ffconcat.mp4").write_bytes(ffconcat_to("target.mp4"))
    render(directory, "segment.ts", [*colour("red", "160x96"), "-c:v", "libx264", "-f", "mpegts"])
    (directory / "hls.mp4").write_bytes(hls_playlist("segment.ts"))
    (directory / "hls.m3u8").write_bytes(hls_playlist("segment.ts"))
    dash = directory / "dash"
    dash.mkdir()
    render(dash, "manifest.mpd", [*colour("red", "160x96"), "-c:v", "libx264", "-f", "dash"])
    (directory / "dash.mp4").write_bytes((dash / "manifest.mpd").read_bytes())
    render(directory, "image.mp4", [*colour("red", "160x96"), "-frames:v", "1", "-c:v", "png", "-f", "image2pipe"])
    # two video streams: the small one first and marked default, the large one second (and the other way round)
    two = ["-map", "0", "-map", "1", *SHORT_CLIP]
    render(directory, "small_first.mkv", [*colour("red", "320x180"), *colour("blue", "480x270"), *two])
    render(directory, "large_first.mp4", [*colour("blue", "480x270"), *colour("red", "320x180"), *two])
    # cover art (an attached picture) larger than the video, and audio files whose only picture is a cover
    render(directory, "cover.png", [*colour("green", "640x640"), "-frames:v", "1"])
    render(
        directory,
        "cover_and_video.mp4",
        [
            "-i",
            str(directory / "cover.png"),
            *colour("red", "160x96"),
            "-map",
            "0",
            "-map",
            "1",
            "-c:v:0",
            "png",
            "-disposition:v:0",
            "attached_pic",
            "-c:v:1",
            "libx264",
            "-qp",
            "0",
            "-pix_fmt:v:1",
            "yuv444p",
        ],
    )
    sine = ["-f", "lavfi", "-i", "sine=d=1"]
    cover_only = [
        "-i",
        str(directory / "cover.png"),
        "-map",
        "0",
        "-map",
        "1",
        "-c:v",
        "png",
        "-disposition:v",
        "attached_pic",
    ]
    render(directory, "cover_only.m4a", [*sine, *cover_only, "-c:a", "aac"])
    render(directory, "cover_only.mp3", [*sine, *cover_only, "-c:a", "libmp3lame", "-id3v2_version", "3"])
    # one tiny PNG frame each: a 1.7 KB file of 34000x10, a 280 KB file of 16000x16000 (256 MB decoded),
    # and a thin picture within the limits (blue in its centre square, red around it)
    render(directory, "wide.mkv", ["-f", "lavfi", "-i", "color=gray:s=34000x10", "-frames:v", "1", "-c:v", "png"])
    render(
        directory,
        "huge.mkv",
        ["-f", "lavfi", "-i", "color=gray:s=16000x16000", "-frames:v", "1", "-pix_fmt", "gray", "-c:v", "png"],
    )
    # a lossless archival codec no camera or video site stores: its decoder is not on the allow-list
    render(directory, "ffv1.mkv", [*colour("red", "160x96"), "-c:v", "ffv1"])
    centre_blue = "drawbox=x=4092:y=0:w=8:h=8:c=blue:t=fill"
    render(
        directory,
        "thin.mkv",
        ["-f", "lavfi", "-i", "color=red:s=8192x8", "-vf", centre_blue, "-frames:v", "1", "-c:v", "png"],
    )
    return directory


def mean_colour(images: list[np.ndarray]) -> np.ndarray:
    return np.mean([image.reshape(-1, 3).mean(axis=0) for image in images], axis=0)


def test_without_the_allow_list_ffmpeg_reads_a_playlist_as_the_video_it_names(media: Path):
    """Why the allow-list exists: plain PyAV opens these text files and follows what they name."""
    with av.open(str(media / "ffconcat.mp4")) as container:
        assert container.format.name == "concat"
        assert next(container.decode(video=0)).width == 160  # the target's frames
    with av.open(str(media / "hls.m3u8")) as container:
        assert container.format.name == "hls"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("ffconcat.mp4", "not a video: an ffconcat playlist that refers to other files"),
        ("hls.mp4", "not a video: an HLS playlist (.m3u8 text)"),
        ("hls.m3u8", "not a video: an HLS playlist (.m3u8 text)"),
        ("dash.mp4", "not a video: a DASH manifest (.mpd XML)"),
        ("image.mp4", "not a video: a PNG image"),
        ("cover_only.m4a", "no video stream (has: audio, a cover picture)"),
        ("cover_only.mp3", "no video stream (has: audio, a cover picture)"),
        ("wide.mkv", "frame size 34000x10 is over the limit of 8192 px a side and 35.4 megapixels"),
        ("huge.mkv", "frame size 16000x16000 is over the limit of 8192 px a side and 35.4 megapixels"),
        ("ffv1.mkv", "video codec ffv1 is not one the sampler decodes (allowed: av1, flv, h263, h264, hevc, "),
    ],
)
def test_a_file_that_is_no_usable_video_is_refused_saying_what_it_is(media: Path, name: str, reason: str):
    assert_refused(media / name, reason)


def test_ffmpeg_itself_opens_no_decoder_off_the_allow_list(media: Path):
    """The check in open_video says why; FFmpeg enforces the same list when it opens a decoder."""
    with av.open(str(media / "ffv1.mkv"), options=DECODER_LIMITS) as container:
        stream = container.streams.video[0]
        stream.codec_context.options = {**stream.codec_context.options, **DECODER_LIMITS}
        with pytest.raises(av.error.FFmpegError, match="ffv1"):
            next(container.decode(stream))


@pytest.mark.parametrize("name", ["small_first.mkv", "large_first.mp4"])
def test_two_video_streams_sample_the_largest_like_the_ffmpeg_cli(media: Path, name: str):
    with open_video(media / name) as container:
        stream = video_stream(container)
        assert (stream.width, stream.height) == (480, 270)
    sampled = sample_frames(media / name, COUNT, SIZE)
    assert len(sampled.images) == COUNT
    assert mean_colour(sampled.images) == pytest.approx(BLUE, abs=4)


def test_a_cover_picture_is_never_sampled_even_when_larger(media: Path):
    """The largest-picture rule alone would take the 640x640 cover over the 160x96 video."""
    with av.open(str(media / "cover_and_video.mp4")) as container:
        pictures = {(s.width, is_cover(s)) for s in container.streams.video}
    assert pictures == {(640, True), (160, False)}
    sampled = sample_frames(media / "cover_and_video.mp4", COUNT, SIZE)
    assert len(sampled.images) == COUNT
    assert mean_colour(sampled.images) == pytest.approx(RED, abs=4)


def test_a_thin_picture_is_cropped_to_its_centre_square_before_scaling(media: Path):
    sampled = sample_frames(media / "thin.mkv", 1, SIZE)
    assert sampled.images[0].shape == (SIZE, SIZE, 3)
    assert mean_colour(sampled.images) == pytest.approx(BLUE, abs=4)


# Runs in a fresh interpreter and prints its peak resident memory: VmHWM, the high-water mark of the
# memory this process mapped since exec. Not ru_maxrss: Linux carries the parent's peak over an exec
# into the child's (and so into RUSAGE_CHILDREN), so under pytest it reports pytest's own size.
PEAK_RSS = """
import sys
from pathlib import Path
from clipvideo.video.decode import sample_frames
from clipvideo.video.probe import VideoError
for path in sys.argv[1:]:
    try:
        sample_frames(Path(path), 16, 224)
    except VideoError as exc:
        print(exc)
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def peak_rss_mb(*paths: Path) -> float:
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *map(str, paths)], cwd=REPO, capture_output=True, text=True, check=True
    )
    return int(result.stdout.split()[-1]) / 1024  # kB


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("name", ["wide.mkv", "huge.mkv", "thin.mkv"])
def test_one_input_costs_little_memory_whatever_its_picture_size(media: Path, name: str):
    """Before sizes were checked and pictures cropped before scaling, these cost 807 MB, 304 MB and
    282 MB at 224 px; Python with PyAV, numpy and the sampler imported takes about 52 MB."""
    baseline = peak_rss_mb()
    assert baseline < 150  # the measure is the child's own memory, not its parent's
    assert peak_rss_mb(media / name) < baseline + 40, name


def test_frames_stage_records_hostile_files_and_takes_no_other_videos_frames(tmp_path: Path, media: Path):
    root = tmp_path / "project"
    (root / "data" / "videos").mkdir(parents=True)
    (root / "data" / "videos" / "segment.ts").write_bytes((media / "segment.ts").read_bytes())
    playlist = tmp_path / "ffconcat.mp4"
    playlist.write_bytes(ffconcat_to(f"{url_id('target.mp4')}.mp4"))  # the target as stored in data/videos
    names = [
        "target.mp4",
        "hls.mp4",
        "small_first.mkv",
        "cover_and_video.mp4",
        "cover_only.m4a",
        "wide.mkv",
        "huge.mkv",
    ]
    result = run_frames_stage(root, {"ffconcat.mp4": playlist, **{name: media / name for name in names}})

    assert {name: row["status"] for name, row in result.items()} == {
        "target.mp4": "ok",
        "small_first.mkv": "ok",
        "cover_and_video.mp4": "ok",
        **dict.fromkeys(["ffconcat.mp4", "hls.mp4", "cover_only.m4a", "wide.mkv", "huge.mkv"], "error"),
    }
    assert result["ffconcat.mp4"]["reason"] == "not a video: an ffconcat playlist that refers to other files"
    assert result["hls.mp4"]["reason"].startswith("not a video: an HLS playlist")
    assert result["cover_only.m4a"]["reason"] == "no video stream (has: audio, a cover picture)"
    assert result["wide.mkv"]["reason"].startswith("frame size 34000x10 is over the limit")
    assert result["huge.mkv"]["reason"].startswith("frame size 16000x16000 is over the limit")
    stored = sorted(p.name for p in (root / "data" / "frames").glob("*.npz"))
    assert stored == sorted(f"{url_id(name)}.npz" for name in ("target.mp4", "small_first.mkv", "cover_and_video.mp4"))


# Decode bombs: tiny files that cost much decoding. One keyframe and many frames of a large solid picture:
# an exact sample decodes every frame up to the last target. Here 10 s of 1280x720 at 25 fps (8 KB), under a
# budget lowered to 100 megapixels so the test runs in a fraction of a second; the real default is in
# tests/test_sampler.py.
ONE_GOP = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "100000", "-keyint_min", "100000", "-sc_threshold", "0"]
LOW_BUDGET = {"frames.max_decode_megapixels": 100}


def solid(size: str, seconds: float) -> list[str]:
    return ["-f", "lavfi", "-i", f"color=red:s={size}:r=25:d={seconds}", *ONE_GOP]


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("bombs")
    render(directory, "one_gop.mp4", solid("1280x720", 10))  # seekable: the seek plan is refused
    render(directory, "one_gop.h264", [*solid("1280x720", 10), "-f", "h264"])  # no timestamps: decoded through
    # a raw stream that declares 64x64 for its first second, then grows to 1280x720 (a new SPS)
    small = render(directory, "small.h264", [*solid("64x64", 1), "-f", "h264"]).read_bytes()
    large = render(directory, "large.h264", [*solid("1280x720", 8), "-f", "h264"]).read_bytes()
    (directory / "growing.h264").write_bytes(small + large)
    return directory


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (
            "one_gop.mp4",
            "decoding would cost 216.6 megapixels (235 frames of 1280x720, from the keyframe before each "
            "sampled time), over frames.max_decode_megapixels=100 (params.yaml)",
        ),
        (
            "one_gop.h264",
            "decoding would cost 216.6 megapixels (235 frames of 1280x720, decoding from the start), "
            "over frames.max_decode_megapixels=100 (params.yaml)",
        ),
        (
            "growing.h264",
            "decoding went over frames.max_decode_megapixels=100 (params.yaml) at a 1280x720 frame: "
            "the picture grew past the size the stream declares (planned: 0.9 megapixels (211 frames "
            "of 64x64, decoding from the start))",
        ),
    ],
)
def test_a_video_whose_decoding_costs_more_than_the_budget_is_refused_with_the_numbers(
    tmp_path: Path, bombs: Path, name: str, reason: str
):
    """Refused in the frames stage as an `error` row, while a normal video in the same run is `ok`; under the
    default budget the same file samples normally."""
    result = run_frames_stage(
        tmp_path / "project", {name: bombs / name, "small.h264": bombs / "small.h264"}, LOW_BUDGET
    )
    assert (result[name]["status"], result[name]["reason"]) == ("error", reason)
    assert result["small.h264"]["status"] == "ok"
    sampled = sample_frames(bombs / name, COUNT, SIZE)
    assert len(sampled.images) == COUNT and mean_colour(sampled.images) == pytest.approx(RED, abs=4)


def test_a_video_past_its_wall_clock_limit_is_an_error_and_is_not_cached(
    tmp_path: Path, bombs: Path, monkeypatch: pytest.MonkeyPatch
):
    """The backstop, with a clock that moves a minute per look (the only fake: a decode that takes long)."""
    ticks = iter(range(0, 10**6, 60))
    monkeypatch.setattr(DecodeBudget, "clock", staticmethod(lambda: next(ticks)))
    limits = FramesSettings(video_timeout_s=90)
    with pytest.raises(VideoError) as caught:
        sample_frames(bombs / "one_gop.mp4", COUNT, SIZE, limits=limits)
    assert str(caught.value) == "decoding took longer than 90 s (frames.video_timeout_s)"
    params = load_params(write_params(tmp_path, {})).frames
    verdict, frames, final = decode_video(bombs / "one_gop.mp4", COUNT, params, 1, limits)
    assert verdict == {
        "status": "error",
        "reason": "decoding took longer than 90 s (frames.video_timeout_s)",
        "n_frames": 0,
    }
    assert frames is None and not final  # not kept in the per-video cache: the next run tries it again


# The bomb of the report (8192x4320, one keyframe and 1,000 frames of solid colour: 122 KB here, 0.28 megapixels a
# byte) takes 2 minutes to encode here; at a quarter of its side it takes seconds and plans 0.09 megapixels a
# byte, still far over any real video's (bench/decode_work.py, docs/security.md).
@pytest.fixture(scope="module")
def default_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("bomb"), "bomb.mp4", solid("2048x1080", 40))


def test_a_decode_bomb_is_refused_by_the_default_settings_with_the_numbers(
    tmp_path: Path, default_bomb: Path, bombs: Path
):
    """params.yaml as shipped: refused from its plan, before decoding a frame, by its work per byte of file (the
    megapixel budget alone lets its 2,000 megapixels through)."""
    result = run_frames_stage(tmp_path / "project", {"bomb.mp4": default_bomb, "small.h264": bombs / "small.h264"})
    assert result["bomb.mp4"]["status"] == "error" and result["small.h264"]["status"] == "ok"
    size = default_bomb.stat().st_size
    work = 938 * 2048 * 1080 / 1e6  # 8 exact frames: the last at 37.5 s of 40, from the one keyframe
    assert result["bomb.mp4"]["reason"] == (
        f"decoding would cost {work:,.1f} megapixels (938 frames of 2048x1080, from the keyframe before each sampled "
        f"time), at {work / size:.3g} megapixels per byte of a {size:,}-byte file, over "
        "frames.max_decode_megapixels_per_byte=0.05 (params.yaml)"
    )
    assert load_params(REPO / "params.yaml").frames.max_decode_megapixels_per_byte == 0.05


def test_a_long_low_bit_rate_static_video_passes_the_default_budget(tmp_path: Path):
    """30 minutes of one still 1080p picture with a keyframe every 10 s (one encoded GOP copied 180 times, as an
    encoder makes of a still picture): about 60 kbit/s, 14 MB, the fewest bytes a long real video has for its frames."""
    still = [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=1920x1080:r=0.1,fps=25",
        "-t",
        "10",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-g",
        "250",
        "-pix_fmt",
        "yuv420p",
    ]
    gop = render(tmp_path, "gop.mp4", still)
    (tmp_path / "list.txt").write_text("ffconcat version 1.0\n" + f"file {gop.name}\n" * 180)
    long = render(tmp_path, "long.mp4", ["-f", "concat", "-safe", "0", "-i", str(tmp_path / "list.txt"), "-c", "copy"])
    frames, width, height, how = planned_work(long, COUNT)
    assert (width, height, how) == (1920, 1080, "from the keyframe before each sampled time")
    assert megapixels(frames, width, height) / long.stat().st_size < 0.05 / 20  # far within the default
    sampled = sample_frames(long, COUNT, SIZE)
    assert len(sampled.images) == COUNT and sampled.times[-1] > 1500


def failed_seek_plan(budget: DecodeBudget, width: int, height: int) -> str:
    """A seek plan of 500 frames that decoded 400 before it failed (a seek that lands elsewhere, a damaged
    packet); then the fallback's plan of decoding through: the refusal it gets, if any."""
    budget.plan(500, width, height, "from the keyframe before each sampled time")
    for _ in range(400):
        budget.spend(av.VideoFrame(width, height, "yuv420p"))
    with pytest.raises(VideoError) as caught:
        budget.plan(1000, width, height, "decoding from the start")
    return str(caught.value)


def test_a_fallback_plan_spends_what_the_failed_plan_left_never_the_whole_budget_again():
    """The seek plan decoded 30.7 megapixels before it failed: decoding through, 76.8 alone, would fit the budget
    of 100, but not with what is spent; and the frames are counted once, from the first plan on."""
    budget = DecodeBudget(FramesSettings(), file_bytes=10**9, max_megapixels=100)
    assert failed_seek_plan(budget, 320, 240) == (
        "decoding would cost 76.8 megapixels (1,000 frames of 320x240, decoding from the start) after 30.7 decoded "
        "by a plan that failed, over frames.max_decode_megapixels=100 (params.yaml)"
    )
    budget.plan(800, 320, 240, "decoding from the start")  # 61.4 more fits
    fallback_frames = 0
    with pytest.raises(VideoError, match=r"^decoding went over frames.max_decode_megapixels=100 \(params.yaml\) at"):
        while True:
            budget.spend(av.VideoFrame(320, 240, "yuv420p"))  # 0.0768 megapixels
            fallback_frames += 1
    assert 400 + fallback_frames + 1 == 1303  # the first frame past 100 megapixels, counting both plans once
    # the same for the budget per byte: 0.05 a byte of a 25 KB file is 1,250 megapixels
    assert failed_seek_plan(DecodeBudget(FramesSettings(), file_bytes=25_000), 1920, 1080) == (
        "decoding would cost 2,073.6 megapixels (1,000 frames of 1920x1080, decoding from the start) after 829.4 "
        "decoded by a plan that failed, at 0.116 megapixels per byte of a 25,000-byte file, over "
        "frames.max_decode_megapixels_per_byte=0.05 (params.yaml)"
    )
