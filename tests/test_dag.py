"""The whole DAG through real DVC in a temporary git repo: repro, no-op repro, experiments and what a user reads."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, VARIANTS, refused_command, run_command, stages_that_ran

pytestmark = pytest.mark.slow

NOT_AFTER_FRAMES = {"manifest", "download", "split", "embed_text"}
PROMPT_STAGES = {"check_params", "embed_text", "train@zeroshot", "evaluate@zeroshot", "report"}
RECIPE = "COLUMNS=120 python -m clipvideo experiments"  # README, "Experiments"


def test_repro_runs_every_stage_and_a_second_repro_is_a_no_op(reproduced_repo: tuple[Path, str], dvc_repo: Path):
    all_stages = set(run_command(["dvc", "stage", "list", "--name-only"], dvc_repo).split())
    assert stages_that_ran(reproduced_repo[1]) == all_stages
    again = run_command(["dvc", "repro"], dvc_repo)
    assert stages_that_ran(again) == set()
    assert "up to date" in again.lower()


def test_experiment_reruns_only_what_frames_count_affects(dvc_repo: Path):
    all_stages = set(run_command(["dvc", "stage", "list", "--name-only"], dvc_repo).split())
    before = {v: json.loads((dvc_repo / "metrics" / f"{v}.json").read_text()) for v in VARIANTS}

    experiment = run_command(["dvc", "exp", "run", "-S", "frames_count=2"], dvc_repo)
    ran = stages_that_ran(experiment)
    assert ran == all_stages - NOT_AFTER_FRAMES
    assert {"frames", "embed", "report", "train@linear", "evaluate@linear"} <= ran

    diff = json.loads(run_command(["dvc", "metrics", "diff", "--all", "--json"], dvc_repo))
    assert set(diff) == {f"metrics/{v}.json" for v in VARIANTS}
    for variant in VARIANTS:
        after = json.loads((dvc_repo / "metrics" / f"{variant}.json").read_text())
        assert {key: (row["old"], row["new"]) for key, row in diff[f"metrics/{variant}.json"].items()} == {
            key: (before[variant][key], after[key]) for key in after
        }
    assert "metrics/linear.json" in run_command(["dvc", "metrics", "diff", "--all"], dvc_repo)


def test_a_prompt_change_reruns_only_zeroshot_and_the_readme_recipe_shows_it_in_120_columns(
    dvc_repo: Path, monkeypatch: pytest.MonkeyPatch
):
    prompts = 'embed_text.prompts=["a clip of {category}", "a video about {category}"]'
    experiment = run_command(["dvc", "exp", "run", "--name", "two-prompts", "-S", prompts], dvc_repo)
    assert stages_that_ran(experiment) == PROMPT_STAGES  # not embed: the frame embeddings stay

    assert f"\n{RECIPE}" in (REPO / "README.md").read_text()
    monkeypatch.setenv("COLUMNS", "120")
    shown = run_command([sys.executable, "-m", "clipvideo", "experiments"], dvc_repo).splitlines()
    assert all(len(line) <= 120 for line in shown)
    rows = {line.split()[0]: line.split()[1:] for line in shown[2:] if not line.startswith("    ")}
    f1 = [f"{json.loads((dvc_repo / 'metrics' / f'{v}.json').read_text())['f1_micro']:.3f}" for v in VARIANTS]
    assert rows["two-prompts"] == f1 and len(rows) == 3  # workspace, the baseline commit, the experiment
    assert any("embed_text.prompts=['a clip of {category}'" in line for line in shown)

    table = list(csv.reader(io.StringIO(run_command(["dvc", "exp", "show", "--csv", "--no-pager"], dvc_repo))))
    assert len(table[0]) <= 80, f"dvc exp show has {len(table[0])} columns: {table[0]}"
    metric_columns = [i for i, name in enumerate(table[0]) if name.startswith("metrics/")]
    assert len(metric_columns) == 2 * len(VARIANTS)
    assert all(float(row[i]) >= 0 for row in table[1:] for i in metric_columns)  # numbers only, no text


def test_a_runtime_setting_or_a_typo_never_becomes_an_experiment(dvc_repo: Path):
    refused = refused_command(["dvc", "exp", "run", "-S", "download.workers=4"], dvc_repo)
    assert "download.workers" in refused  # DVC: not in params.yaml (it is a setting: settings.yaml)
    typo = refused_command(["dvc", "exp", "run", "-S", "+frame_count=8"], dvc_repo)
    assert "params.yaml: unknown top-level key frame_count; known keys: frames_count, seed" in typo
    assert stages_that_ran(typo) == {"check_params"}
    run_command(["git", "checkout", "params.yaml"], dvc_repo)  # DVC left the typo there, as README says
    hinted = refused_command(["dvc", "exp", "run", "-S", "+download.workers=4"], dvc_repo)  # DVC's own hint
    assert "params.yaml: unknown key download.workers; download takes max_height, max_filesize_mb" in hinted
    assert run_command(["dvc", "exp", "list", "--name-only"], dvc_repo).strip() == ""


def test_a_bad_variants_file_stops_dvc_repro_at_check_params_before_any_other_stage(dvc_repo: Path):
    """With a change that reruns manifest and everything after it, check_params (first in dvc.yaml) still runs
    first and stops the run in one line: nothing downloads or decodes for hours before train@ reads the file."""
    params = dvc_repo / "params.yaml"
    params.write_text(params.read_text().replace("seed: 42", "seed: 7", 1))
    variants = dvc_repo / "variants.yaml"
    variants.write_text(variants.read_text().replace("kind: logreg", "kind: svm", 1))
    refused = refused_command(["dvc", "repro"], dvc_repo)
    assert stages_that_ran(refused) == {"check_params"}
    errors = [line for line in refused.splitlines() if line.startswith("check_params: error:")]
    assert errors == ["check_params: error: variants.yaml: logreg.kind='svm': expected one of linear, transformer, "
                      "logreg, zeroshot"]  # fmt: skip


def test_plots_list_each_curve_and_error_image_once_and_a_csv_in_datasets_reruns_nothing(dvc_repo: Path):
    plots = json.loads(run_command(["dvc", "plots", "show", "--json"], dvc_repo))["data"]
    curves = [f"plots/{kind}/{v}.csv" for kind in ("confusion", "train") for v in VARIANTS]
    assert sorted(plots) == sorted(curves + [f"plots/errors/{v}.png" for v in VARIANTS])  # each once, and the images

    (dvc_repo / "datasets" / "youtube" / "youtube.csv").write_text("link,title,description,category\n")
    (dvc_repo / "datasets" / "other.csv").write_text("a,b\n")
    assert json.loads(run_command(["dvc", "status", "--json"], dvc_repo)) == {}
    assert run_command(["git", "status", "--porcelain"], dvc_repo).strip() == ""  # git-ignored as well


def test_the_readme_predict_example_runs_after_dvc_repro(dvc_repo: Path):
    readme = (REPO / "README.md").read_text()
    video, variant = re.search(r"^python -m stages\.predict (data/\S+) --variant (\S+)", readme, re.M).groups()
    assert (dvc_repo / video).is_file()
    shown = run_command([sys.executable, "-m", "stages.predict", video, "--variant", variant], dvc_repo)
    assert "category: " in shown


def test_a_file_changed_in_place_is_found_and_repaired_by_the_recipe(dvc_repo: Path):
    """DVC trusts size and modification time: docs/operations.md's recipe makes it rehash, then restores the cached
    copy; an output DVC does not cache (reports/) comes back from git."""
    # DVC remembers hashes per repo path: a user's repo has them from `dvc repro`, this fresh copy gets them here
    assert "up to date" in run_command(["dvc", "status"], dvc_repo).lower()
    assert "up to date" in run_command(["dvc", "status"], dvc_repo).lower()  # DVC now remembers every hash
    originals = {}
    for name, old, new in (("data/frames.csv", b",ok,", b",OK,"), ("reports/linear.json", b'"variant"', b'"VARIANT"')):
        path = dvc_repo / name
        originals[name] = path.read_bytes()
        before = path.stat()
        path.write_bytes(originals[name].replace(old, new, 1))  # same size
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # same modification time
    assert "modified" not in run_command(["dvc", "status"], dvc_repo)  # not noticed: the silent corruption

    recipe = (REPO / "docs" / "operations.md").read_text()
    assert "python -m clipvideo rehash" in recipe and "git checkout" in recipe
    assert "rehash: removed " in run_command([sys.executable, "-m", "clipvideo", "rehash"], dvc_repo)
    status = run_command(["dvc", "status"], dvc_repo)
    assert "modified:" in status and "data/frames.csv" in status and "reports/linear.json" in status
    run_command(["dvc", "checkout", "--relink", "--force"], dvc_repo)
    assert (dvc_repo / "data/frames.csv").read_bytes() == originals["data/frames.csv"]
    assert (dvc_repo / "reports/linear.json").read_bytes() != originals["reports/linear.json"]  # not cached by DVC
    run_command(["git", "checkout", "--", "reports/linear.json"], dvc_repo)
    assert (dvc_repo / "reports/linear.json").read_bytes() == originals["reports/linear.json"]
    assert "up to date" in run_command(["dvc", "status"], dvc_repo).lower()

