"""A team cache: one person pushes outputs and the run-cache to a DVC remote (a local folder here, S3/GCS/SSH/NFS
in real life); a colleague clones the repo, pulls, and `dvc repro` runs nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_command, stages_that_ran

pytestmark = pytest.mark.slow


def test_a_clone_that_pulls_from_the_team_remote_reproduces_nothing(dvc_repo: Path, tmp_path: Path):
    remote = tmp_path / "team-remote"
    run_command(["dvc", "remote", "add", "--default", "team", str(remote)], dvc_repo)
    pushed = run_command(["dvc", "push", "--run-cache"], dvc_repo)
    assert "pushed" in pushed.lower() and any(remote.rglob("*"))
    run_command(["git", "commit", "-qam", "team remote"], dvc_repo)

    clone = tmp_path / "colleague"
    run_command(["git", "clone", "-q", str(dvc_repo), str(clone)], tmp_path)
    assert not (clone / "data").exists()  # a fresh clone: code, params and dvc.lock only
    run_command(["dvc", "pull"], clone)
    assert (clone / "data" / "embeddings" / "frames.npy").is_file()

    again = run_command(["dvc", "repro"], clone)
    assert stages_that_ran(again) == set()
    assert "up to date" in again.lower()
    assert run_command(["git", "status", "--porcelain"], clone) == ""  # and dvc.lock is unchanged
