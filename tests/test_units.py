"""Small pieces: frame times, ids, the sample generator, the ffmpeg binary, atomic writes, --help."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from clipvideo.acquire.sample import generate_sample
from clipvideo.config.schema import SampleParams
from clipvideo.core import files
from clipvideo.core import system as ffmpeg
from clipvideo.core.errors import DiskFullError, PipelineError
from clipvideo.core.ids import is_safe_id, url_id
from clipvideo.core.system import available_cores
from clipvideo.video.plan import sample_frame_times
from stages import frames


def test_frame_times_are_evenly_spaced_inside_the_video():
    times = sample_frame_times(10.0, 4)
    np.testing.assert_allclose(times, [1.25, 3.75, 6.25, 8.75])
    assert np.allclose(np.diff(sample_frame_times(7.3, 16)), 7.3 / 16)


def test_ids_are_file_name_safe():
    assert is_safe_id("dQw4w9WgXcQ") and is_safe_id(url_id("https://example.com/a.mp4"))
    for bad in ("../../x", "a/b", "", "x" * 200, "abc; rm -rf /", "dQw4w9WgXc"):
        assert not is_safe_id(bad)
    assert url_id("a") != url_id("b") and url_id("a") == url_id("a")


# One short video per category: below what params.yaml allows (2), built without validation for speed.
ONE_EACH = SampleParams.model_construct(
    videos_per_category=1, min_duration_s=1, max_duration_s=2, distractor_opacity=0, series_per_category=0
)


def test_sample_is_deterministic_for_a_seed(tmp_path: Path):
    def render(out: Path, seed: int) -> list[str]:
        videos = generate_sample(out, ["food", "history"], ONE_EACH, seed)
        return [hashlib.sha256(v.path.read_bytes()).hexdigest() for v in videos]

    assert render(tmp_path / "a", 5) == render(tmp_path / "b", 5)
    assert render(tmp_path / "c", 6) != render(tmp_path / "a", 5)


def test_sample_rejects_categories_it_cannot_render(tmp_path: Path):
    with pytest.raises(PipelineError, match=r"dataset\.categories"):
        list(generate_sample(tmp_path, ["sports", "food"], ONE_EACH, 0))


def test_ffmpeg_falls_back_to_the_wheel_binary(monkeypatch: pytest.MonkeyPatch):
    ffmpeg.ffmpeg_binary.cache_clear()
    monkeypatch.setattr(ffmpeg.shutil, "which", lambda name: None)
    try:
        assert "imageio_ffmpeg" in ffmpeg.ffmpeg_binary()
        assert Path(ffmpeg.ffmpeg_binary()).is_file()
    finally:
        ffmpeg.ffmpeg_binary.cache_clear()


def test_atomic_writes_are_on_disk_before_the_rename_and_the_rename_after(tmp_path: Path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def spy_fsync(descriptor: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def spy_replace(source: Path, target: Path) -> None:
        events.append(("replace", str(target)))
        real_replace(source, target)

    monkeypatch.setattr(files.os, "fsync", spy_fsync)
    monkeypatch.setattr(files.os, "replace", spy_replace)
    folder = tmp_path.resolve()
    files.write_text_atomic(folder / "a.txt", "content")
    temporary = folder / f".a.txt.{os.getpid()}{files.TMP_SUFFIX}"
    assert events == [("fsync", str(temporary)), ("replace", str(folder / "a.txt")), ("fsync", str(folder))]
    assert (folder / "a.txt").read_text() == "content"

    events.clear()
    with files.atomic_path(folder / "out") as built:
        built.mkdir()
        (built / "part").write_bytes(b"x")
    assert events == [
        ("fsync", str(built / "part")),
        ("fsync", str(built)),
        ("replace", str(folder / "out")),
        ("fsync", str(folder)),
    ]


def test_stage_help_keeps_the_docstring_paragraphs(capsys):
    with pytest.raises(SystemExit) as exited:
        frames.main(["--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out.splitlines()
    assert all(line in shown for line in frames.__doc__.strip().splitlines())


def test_decoding_threads_follow_the_cores_this_process_may_use():
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        assert available_cores() == 1
    finally:
        os.sched_setaffinity(0, allowed)
    assert available_cores() == len(allowed)


def test_disk_full_names_the_output_being_written_not_the_source_or_nothing(tmp_path: Path) -> None:
    """A copy's OSError names its source first, a plain write names no file: the message must name the output."""
    source = tmp_path / "source.mp4"
    source.write_bytes(b"video")
    final = tmp_path / "videos" / "abc.mp4"
    with pytest.raises(DiskFullError) as caught, files.atomic_path(final) as tmp:
        shutil.copyfile(source, tmp)
        raise OSError(errno.ENOSPC, "No space left on device", str(source), None, str(tmp))
    assert str(caught.value) == f"{final}: disk full; free space and rerun (finished videos are kept)"
    with pytest.raises(DiskFullError, match=rf"^{final}: disk full"), files.atomic_path(final):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert not final.exists() and list(final.parent.iterdir()) == []


def test_the_rehash_command_refuses_outside_a_dvc_repository(tmp_path: Path, monkeypatch, capsys):
    """Where `dvc doctor` prints no site cache line, the old recipe expanded to `rm -rf "/hashes"`."""
    from clipvideo.__main__ import main

    monkeypatch.chdir(tmp_path)
    assert main(["rehash"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"rehash: error: {tmp_path} is not inside a DVC repository; run it in the project\n"
