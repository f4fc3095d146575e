"""The whole DAG through real DVC in a temporary git repo: repro, no-op repro, exp run, metrics diff."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_command, stages_that_ran

pytestmark = pytest.mark.slow

UPSTREAM_OF_FRAMES = {"manifest", "download", "split"}


def flatten(metrics: dict, prefix: str = "") -> dict:
    """Nested metrics as DVC names them: `per_class.food.f1`."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_repro_runs_every_stage_and_a_second_repro_is_a_no_op(reproduced_repo: tuple[Path, str], dvc_repo: Path):
    all_stages = set(run_command(["dvc", "stage", "list", "--name-only"], dvc_repo).split())
    assert stages_that_ran(reproduced_repo[1]) == all_stages
    again = run_command(["dvc", "repro"], dvc_repo)
    assert stages_that_ran(again) == set()
    assert "up to date" in again.lower()


def test_experiment_reruns_only_what_frames_count_affects(dvc_repo: Path):
    all_stages = set(run_command(["dvc", "stage", "list", "--name-only"], dvc_repo).split())
    baseline = flatten(json.loads((dvc_repo / "metrics" / "linear.json").read_text()))

    experiment = run_command(["dvc", "exp", "run", "-S", "frames_count=2"], dvc_repo)
    ran = stages_that_ran(experiment)
    assert ran == all_stages - UPSTREAM_OF_FRAMES
    assert {"frames", "embed", "report", "train@linear", "evaluate@linear"} <= ran

    diff = json.loads(run_command(["dvc", "metrics", "diff", "--json"], dvc_repo))
    changed = diff["metrics/linear.json"]
    assert changed, "dvc metrics diff reported no change for metrics/linear.json"
    after = flatten(json.loads((dvc_repo / "metrics" / "linear.json").read_text()))
    for key, row in changed.items():
        assert row["old"] == baseline[key] and row["new"] == after[key]
    assert "metrics/linear.json" in run_command(["dvc", "metrics", "diff"], dvc_repo)


def test_a_file_changed_in_place_is_found_and_repaired_by_the_readme_recipe(dvc_repo: Path):
    """DVC trusts size and modification time: the README's recipe makes it rehash, then restores the cached copy."""
    table = dvc_repo / "data" / "frames.csv"
    assert "up to date" in run_command(["dvc", "status"], dvc_repo).lower()  # DVC now remembers every hash
    original = table.read_bytes()
    before = table.stat()
    table.write_bytes(original.replace(b",ok,", b",OK,", 1))  # same size
    os.utime(table, ns=(before.st_atime_ns, before.st_mtime_ns))  # same modification time
    assert "modified" not in run_command(["dvc", "status"], dvc_repo)  # not noticed: the silent corruption

    doctor = run_command(["dvc", "doctor"], dvc_repo)
    site_cache = re.search(r"^Repo\.site_cache_dir: (.+)$", doctor, re.MULTILINE).group(1).strip()
    shutil.rmtree(Path(site_cache) / "hashes", ignore_errors=True)
    status = run_command(["dvc", "status"], dvc_repo)
    assert "modified:" in status and "data/frames.csv" in status
    run_command(["dvc", "checkout", "--relink", "--force"], dvc_repo)
    assert table.read_bytes() == original
    assert "up to date" in run_command(["dvc", "status"], dvc_repo).lower()
