"""SIGKILL in the middle of frames and embed: the rerun resumes per video from the per-video cache and ends with
the same outputs as an uninterrupted run, with no temporary or partial file left behind.

(The download stage's kill test lives with its resume logic in test_download.py.)
"""

from __future__ import annotations

import errno
import filecmp
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from clipvideo.core import cache as cache_module
from clipvideo.core.contracts import VIDEOS_COLUMNS
from clipvideo.core.files import write_bytes_atomic, write_text_atomic
from clipvideo.core.ids import url_id
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.tables import read_table, write_table
from clipvideo.video.store import load_frame_jpegs
from stages import embed, frames
from tests.conftest import REPO, cache_entries, copy_project, write_params
from tests.conftest import run_command as dvc_run

COPIES = 5  # of each of the 12 sample videos: 60 videos, a few seconds of decoding


def many_videos_project(source: Path, root: Path) -> ProjectPaths:
    """The downloaded sample with every video copied COPIES times under new ids, each copy its own bytes (an
    MP4 `free` box appended, which demuxers skip): the per-video cache knows a video by its bytes."""
    paths = ProjectPaths(root)
    paths.videos_dir.mkdir(parents=True)
    rows = []
    for row in read_table(ProjectPaths(source).videos_table, VIDEOS_COLUMNS):
        for copy in range(COPIES):
            video_id = url_id(f"{row['id']}/{copy}")
            target = paths.videos_dir / f"{video_id}.mp4"
            target.write_bytes((source / row["path"]).read_bytes() + struct.pack(">I4sQ", 16, b"free", copy))
            rows.append({**row, "id": video_id, "path": target.relative_to(root).as_posix()})
    write_table(paths.videos_table, VIDEOS_COLUMNS, rows)
    return paths


def kill_when(stage: str, root: Path, ready: Callable[[], bool], timeout_s: float = 120) -> None:
    """Run `python -m stages.<stage>` and SIGKILL it as soon as `ready()`; it must not have finished."""
    command = [sys.executable, "-m", f"stages.{stage}", "--root", str(root)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    output = process.communicate()[0].decode(errors="replace")
    assert process.returncode == -signal.SIGKILL, f"{stage} ended before it could be killed:\n{output[-2000:]}"


def run_stage(stage: str, root: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", f"stages.{stage}", "--root", str(root)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=True)


def leftovers(root: Path) -> list[str]:
    """Temporaries anywhere under data/ or in the per-video cache: none may survive a finished run."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.tmp"))


def assert_same_tree(left: Path, right: Path) -> None:
    comparison = filecmp.dircmp(left, right)
    assert sorted(comparison.left_list) == sorted(comparison.right_list)
    _, mismatch, errors = filecmp.cmpfiles(left, right, comparison.common_files, shallow=False)
    assert mismatch == [] and errors == []


@pytest.fixture
def many_videos(tmp_path: Path, downloaded_sample: Path, shrunk_params) -> ProjectPaths:
    paths = many_videos_project(downloaded_sample, tmp_path / "killed")
    write_params(paths.root, {**shrunk_params, "frames_count": 16, "frames.size": 96, "frames.workers": 1})
    return paths


def test_frames_killed_mid_run_resumes_per_video_with_identical_outputs(many_videos: ProjectPaths, tmp_path: Path):
    reference = ProjectPaths(tmp_path / "reference")
    shutil.copytree(many_videos.root, reference.root)
    assert frames.main(["--root", str(reference.root)]) == 0

    kill_when("frames", many_videos.root, lambda: frames_finished(many_videos) >= 3)
    done_before_kill = frames_finished(many_videos)
    assert 3 <= done_before_kill < 12 * COPIES
    assert not many_videos.frames_table.exists()
    # what the killed run left: only complete files under final names, the rest hidden as temporaries
    for path in many_videos.frames_dir.glob("*.npz"):
        assert len(load_frame_jpegs(path)) > 0

    rerun = run_stage("frames", many_videos.root)
    assert f"{12 * COPIES - done_before_kill} videos decoded, {done_before_kill} reused from the cache" in rerun.stdout
    assert many_videos.frames_table.read_bytes() == reference.frames_table.read_bytes()
    assert_same_tree(many_videos.frames_dir, reference.frames_dir)
    assert leftovers(many_videos.root) == []


def frames_finished(paths: ProjectPaths) -> int:
    return cache_entries(paths.root, "frames")


def test_frames_resume_skips_a_replaced_video(many_videos: ProjectPaths, capsys):
    kill_when("frames", many_videos.root, lambda: frames_finished(many_videos) >= 2)
    done_before_kill = frames_finished(many_videos)
    replaced = read_table(many_videos.videos_table, VIDEOS_COLUMNS)[0]["id"]  # the first video is done first
    (many_videos.videos_dir / f"{replaced}.mp4").write_bytes(b"<html>gone</html>")
    capsys.readouterr()
    assert frames.main(["--root", str(many_videos.root)]) == 0
    assert f", {done_before_kill - 1} reused from the cache" in capsys.readouterr().out
    rows = {row["id"]: row for row in read_table(many_videos.frames_table, ("id", "status", "reason", "n_frames"))}
    assert rows[replaced]["status"] == "error" and "HTML" in rows[replaced]["reason"]
    assert leftovers(many_videos.root) == []


def test_frames_resume_is_not_used_for_other_params(many_videos: ProjectPaths, shrunk_params, capsys):
    kill_when("frames", many_videos.root, lambda: frames_finished(many_videos) >= 2)
    write_params(many_videos.root, {**shrunk_params, "frames_count": 16, "frames.size": 64})
    capsys.readouterr()
    assert frames.main(["--root", str(many_videos.root)]) == 0
    assert f"{12 * COPIES} videos decoded, 0 reused from the cache" in capsys.readouterr().out
    assert leftovers(many_videos.root) == []


def test_embed_killed_mid_run_resumes_with_identical_outputs(many_videos: ProjectPaths, tmp_path: Path, shrunk_params):
    # the 60 videos are 12 pictures: 12 frames files of up to 64 frames, 9 forward batches of 64
    write_params(many_videos.root, {**shrunk_params, "frames_count": 64, "frames.size": 96})
    assert frames.main(["--root", str(many_videos.root)]) == 0
    reference = ProjectPaths(tmp_path / "reference")
    shutil.copytree(many_videos.root, reference.root)
    assert embed.main(["--root", str(reference.root)]) == 0

    def finished() -> int:
        return cache_entries(many_videos.root, "embeddings")

    kill_when("embed", many_videos.root, lambda: finished() >= 3)
    done_before_kill = finished()
    assert 3 <= done_before_kill < 12  # the copies of a video have the same frames: 12 to embed
    assert not many_videos.embeddings_dir.exists()  # the array is built aside and renamed when complete

    rerun = run_stage("embed", many_videos.root)
    left = 12 - done_before_kill
    assert f"{left} videos embedded, {12 * COPIES - left} reused from the cache" in rerun.stdout
    assert np.array_equal(
        np.load(many_videos.embeddings_dir / "frames.npy"), np.load(reference.embeddings_dir / "frames.npy")
    )
    assert_same_tree(many_videos.embeddings_dir, reference.embeddings_dir)
    assert leftovers(many_videos.root) == []


def test_disk_full_stops_frames_in_one_line_and_the_rerun_resumes(project: ProjectPaths, shrunk_params, capsys):
    write_params(project.root, {**shrunk_params, "frames.workers": 1})
    saved = []

    def save_until_full(path: Path, data: bytes, shared: bool = False) -> None:
        """The real writer, until the disk is "full" after two videos (the only fake: an OS error)."""
        if len(saved) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        saved.append(path)
        write_bytes_atomic(path, data, shared)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cache_module, "write_bytes_atomic", save_until_full)
        assert frames.main(["--root", str(project.root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert err.startswith("frames: error: ") and err.endswith(
        "disk full; free space and rerun (finished videos are kept)"
    )
    assert not project.frames_table.exists()

    assert frames.main(["--root", str(project.root)]) == 0
    assert "10 videos decoded, 2 reused from the cache" in capsys.readouterr().out
    assert leftovers(project.root) == []


def test_an_atomic_write_removes_what_a_killed_writer_of_the_same_file_left(tmp_path: Path):
    (tmp_path / ".table.csv.4242.tmp").write_text("half a tab")
    (tmp_path / ".other.csv.4242.tmp").write_text("not ours")
    (tmp_path / ".table.csv.4343.tmp").mkdir()
    write_text_atomic(tmp_path / "table.csv", "id\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.csv.4242.tmp", "table.csv"]


@pytest.mark.slow
def test_dvc_repro_killed_in_frames_resumes_and_locks_what_an_uninterrupted_run_locks(tmp_path: Path, shrunk_params):
    """Under DVC, which deletes a stage's outs before running it: the per-video cache survives, the rerun
    resumes, and dvc.lock records the same hashes as a clean run of the same params with an empty cache."""
    root = tmp_path / "repo"
    root.mkdir()
    copy_project(root)
    write_params(root, {**shrunk_params, "frames_count": 32, "frames.size": 128, "frames.workers": 1})
    dvc_run(["git", "init", "-q"], root)
    dvc_run(["dvc", "init", "-q"], root)
    dvc_run(["dvc", "repro", "download"], root)
    paths = ProjectPaths(root)

    process = subprocess.Popen(
        ["dvc", "repro", "frames"],
        cwd=root,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while frames_finished(paths) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)  # dvc and the stage it runs
    process.wait()
    done_before_kill = frames_finished(paths)
    assert 2 <= done_before_kill < 12 and not paths.frames_table.exists()

    resumed = dvc_run(["dvc", "repro", "frames"], root)
    assert f"{12 - done_before_kill} videos decoded, {done_before_kill} reused from the cache" in resumed
    assert "Running stage" not in dvc_run(["dvc", "repro", "frames"], root)
    locked = frames_lock(root)
    assert leftovers(root) == []

    write_params(
        root,
        {
            **shrunk_params,
            "frames_count": 32,
            "frames.size": 128,
            "frames.workers": 1,
            "cache.dir": str(tmp_path / "empty-cache"),
        },
    )
    clean = dvc_run(["dvc", "repro", "--force", "--single-item", "--no-run-cache", "frames"], root)
    assert "12 videos decoded, 0 reused from the cache" in clean and "Running stage 'frames'" in clean
    assert frames_lock(root) == locked


def frames_lock(root: Path) -> dict[str, str]:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for out in lock["stages"]["frames"]["outs"]}
