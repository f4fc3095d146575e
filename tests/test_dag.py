"""The whole DAG through real DVC in a temporary git repo: repro, no-op repro, exp run, metrics diff."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, write_params

pytestmark = pytest.mark.slow

PROJECT_FILES = ("dvc.yaml", ".dvcignore", ".gitignore", "pyproject.toml")
PROJECT_DIRS = ("clipvideo", "stages")
UPSTREAM_OF_FRAMES = {"manifest", "download", "split"}


def run(cmd: list[str], cwd: Path) -> str:
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        "PYTHONPATH": str(cwd),
    }
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{output[-4000:]}"
    return output


def flatten(metrics: dict, prefix: str = "") -> dict:
    """Nested metrics as DVC names them: `per_class.food.f1`."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def stages_that_ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture
def dvc_project(tmp_path: Path, shrunk_params: dict) -> Path:
    """A fresh git + DVC repo holding the pipeline code and shrunk params."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in PROJECT_DIRS:
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in PROJECT_FILES:
        shutil.copy2(REPO / name, root / name)
    write_params(root, shrunk_params)
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    run(["dvc", "config", "core.analytics", "false"], root)
    return root


def test_repro_then_experiment_reruns_only_what_frames_count_affects(dvc_project: Path):
    all_stages = set(run(["dvc", "stage", "list", "--name-only"], dvc_project).split())
    first = run(["dvc", "repro"], dvc_project)
    assert stages_that_ran(first) == all_stages
    metrics_files = sorted(p.name for p in (dvc_project / "metrics").glob("*.json"))
    assert "linear.json" in metrics_files

    again = run(["dvc", "repro"], dvc_project)
    assert stages_that_ran(again) == set()
    assert "up to date" in again.lower()

    run(["git", "add", "-A"], dvc_project)
    run(["git", "commit", "-qm", "baseline"], dvc_project)
    baseline = flatten(json.loads((dvc_project / "metrics" / "linear.json").read_text()))

    experiment = run(["dvc", "exp", "run", "-S", "frames_count=2"], dvc_project)
    ran = stages_that_ran(experiment)
    assert ran == all_stages - UPSTREAM_OF_FRAMES
    assert {"frames", "embed", "report", "train@linear", "evaluate@linear"} <= ran

    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], dvc_project))
    changed = diff["metrics/linear.json"]
    assert changed, "dvc metrics diff reported no change for metrics/linear.json"
    after = flatten(json.loads((dvc_project / "metrics" / "linear.json").read_text()))
    for key, row in changed.items():
        assert row["old"] == baseline[key] and row["new"] == after[key]
    table = run(["dvc", "metrics", "diff"], dvc_project)
    assert "metrics/linear.json" in table
