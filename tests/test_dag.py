"""The whole DAG through real DVC in a temporary git repo: repro, no-op repro, experiments and what a user reads."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest
import yaml

from clipvideo.config.variants import train_stage_name
from clipvideo.core.contracts import DVC_METRICS
from tests.conftest import REPO, SHRUNK, VARIANTS, command_result, refused_command, run_command, stages_that_ran

pytestmark = pytest.mark.slow

NOT_AFTER_FRAMES = {"manifest", "download", "split", "embed_text"}
PROMPT_STAGES = {"check_params", "embed_text", "train_zeroshot@zeroshot", "evaluate@zeroshot", "report"}
RECIPE = "COLUMNS=120 python -m clipvideo experiments"  # README, "Experiments"
SWEEP = "dvc exp run -S frames_count=4,32 --queue"  # docs/experiments.md, "A sweep"
NOISE = "dvc exp run -S train.seed=1,2,3,4,5 --queue"  # docs/models.md, the training-noise recipe: a sweep of seeds
REPAIR = "dvc exp run -S ~frame_count"  # docs/experiments.md: drop a misspelled key, keep the other params
PNGS = [f"plots/errors/{v}.png" for v in VARIANTS]


def test_repro_runs_every_stage_and_a_second_repro_is_a_no_op(reproduced_repo: tuple[Path, str], dvc_repo: Path):
    all_stages = set(run_command(["dvc", "stage", "list", "--name-only"], dvc_repo).split())
    assert stages_that_ran(reproduced_repo[1]) == all_stages
    again = run_command(["dvc", "repro"], dvc_repo)
    assert stages_that_ran(again) == set()
    assert "up to date" in again.lower()


def test_a_fresh_clone_checks_first_whatever_stage_is_asked_for(dvc_repo: Path, tmp_path: Path):
    """`dvc repro --dry train@linear` in a fresh clone: check_params, the gate, is the first stage it runs. (DVC's
    dry run then stops at the next stage, whose input the dry run did not make: it does so in any clone of any
    chain, so the exit status says nothing here.)"""
    clone = tmp_path / "clone"
    run_command(["git", "clone", "-q", str(dvc_repo), str(clone)], tmp_path)
    dry = command_result(["dvc", "repro", "--dry", "train@linear"], clone)
    planned = stages_that_ran(dry.stdout + dry.stderr)
    assert planned == {"check_params"}, dry.stdout + dry.stderr
    assert "failed to reproduce 'manifest'" in dry.stdout + dry.stderr  # the next stage, waiting for the gate's out


def test_long_work_shows_progress_under_dvc_repro(reproduced_repo: tuple[Path, str]):
    """What a user sees in the first run: a bar over the sample's videos, the frames, the embeddings, and a bar per
    epoch with the loss for every variant trained epoch by epoch (tqdm on stderr, which DVC passes through)."""
    output = reproduced_repo[1]
    videos = SHRUNK["sample.videos_per_category"] * 4
    assert re.search(rf"manifest: rendering the sample: 100%\S* *\| {videos}/{videos} ", output)
    assert re.search(rf"frames: 100%\S* *\| {videos}/{videos} ", output)
    assert re.search(r"embed: 100%\S* *\| (\d+)/\1 \[[^\]\r\n]*(frame/s|s/frame)", output)
    for name, variant in VARIANTS.items():
        bar = rf"train {re.escape(name)}: +\d+%\S* *\| \d+/\d+ \[[^\]\r\n]*(epoch/s|s/epoch), loss=\d+\.\d{{4}}, f1="
        shown = re.search(bar, output)
        assert bool(shown) == variant.has_curve, name


def test_experiment_reruns_only_what_frames_count_affects(dvc_repo: Path):
    all_stages = set(run_command(["dvc", "stage", "list", "--name-only"], dvc_repo).split())
    before = {v: json.loads((dvc_repo / "metrics" / f"{v}.json").read_text()) for v in VARIANTS}

    experiment = run_command(["dvc", "exp", "run", "-S", "frames_count=2"], dvc_repo)
    ran = stages_that_ran(experiment)
    assert ran == all_stages - NOT_AFTER_FRAMES
    assert {"frames", "embed", "report", "train@linear", "evaluate@linear"} <= ran

    diff = json.loads(run_command(["dvc", "metrics", "diff", "--all", "--json"], dvc_repo))
    assert set(diff) == {f"metrics/{v}.json" for v in VARIANTS} | {"metrics/leakage.json"}
    for variant in VARIANTS:
        after = json.loads((dvc_repo / "metrics" / f"{variant}.json").read_text())
        assert {key: (row["old"], row["new"]) for key, row in diff[f"metrics/{variant}.json"].items()} == {
            key: (before[variant][key], after[key]) for key in after
        }
    assert "metrics/linear.json" in run_command(["dvc", "metrics", "diff", "--all"], dvc_repo)


def test_a_training_seed_reruns_training_and_nothing_upstream(dvc_repo: Path):
    """`-S train.seed=...` (the recipe for training noise) retrains the variants that draw random numbers and
    leaves the split and the embeddings up to date: no seed of theirs moved."""
    seeded = {name for name, variant in VARIANTS.items() if "train.seed" in variant.params}
    assert seeded == {name for name, variant in VARIANTS.items() if variant.kind in ("linear", "transformer")}
    experiment = run_command(["dvc", "exp", "run", "-S", "train.seed=7"], dvc_repo)
    assert stages_that_ran(experiment) == {"check_params", "report"} | {
        name for v in seeded for name in (train_stage_name(v, VARIANTS), f"evaluate@{v}")
    }
    assert "up to date" in run_command(["dvc", "status", "split", "embed", "check_leakage"], dvc_repo).lower()


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
    rows = experiment_rows(shown)
    f1 = [f"{json.loads((dvc_repo / 'metrics' / f'{v}.json').read_text())['f1_micro']:.3f}" for v in VARIANTS]
    assert [value.rstrip("*") for value in rows["two-prompts"]] == f1
    assert len(rows) == 3  # workspace, the baseline commit, the experiment
    assert any("embed_text.prompts=['a clip of {category}'" in line for line in shown)

    table = list(csv.reader(io.StringIO(run_command(["dvc", "exp", "show", "--csv", "--no-pager"], dvc_repo))))
    assert len(table[0]) <= 171, f"dvc exp show has {len(table[0])} columns: {table[0]}"  # docs/experiments.md
    # DVC names a metric by its file only where another file has the same name: near_duplicates stands alone
    metric_columns = [i for i, name in enumerate(table[0]) if name.startswith("metrics/") or name == "near_duplicates"]
    assert len(metric_columns) == len(DVC_METRICS) * len(VARIANTS) + 2  # and metrics/leakage.json's two
    assert all(float(row[i]) >= 0 for row in table[1:] for i in metric_columns)  # numbers only, no text


def experiment_rows(shown: list[str], metric: str = "f1_micro") -> dict[str, list[str]]:
    """`python -m clipvideo experiments`' rows: name -> its values (val's choice with a `*`); not the params lines."""
    footer = (
        "* the best val_f1_micro of the row"
        if metric == "val_f1_micro"
        else (f"* the variant the row chose on val (val_f1_micro); {metric} is the test set's")
    )
    assert shown[-1] == footer
    return {line.split()[0]: line.split()[1:] for line in shown[2:-1] if not line.startswith("    ")}


def test_the_sweep_recipe_queues_one_experiment_per_value_and_the_table_marks_the_best(
    dvc_repo: Path, monkeypatch: pytest.MonkeyPatch
):
    """docs/experiments.md, "A sweep": `-S key=a,b --queue` queues one experiment per value; `dvc queue start` runs
    them; the 120-column table shows each with its value and a `*` on its best variant. Swept here: the training
    seed (models.md's noise recipe, two seeds), which reruns the seeded variants, not the frames and embeddings."""
    recipe = (REPO / "docs" / "experiments.md").read_text()
    assert SWEEP in recipe and "dvc queue start -j 1\n" in recipe and f"\n{RECIPE}" in recipe
    assert NOISE in (REPO / "docs" / "models.md").read_text()
    run_command(["dvc", "exp", "run", "-S", "train.seed=1,2", "--queue"], dvc_repo)
    assert run_command(["dvc", "queue", "status"], dvc_repo).count("Queued") == 2
    run_command(["dvc", "queue", "start", "-j", "1"], dvc_repo)
    deadline = time.monotonic() + 900
    while re.search(r"\b(Queued|Running)\b", status := run_command(["dvc", "queue", "status"], dvc_repo)):
        assert time.monotonic() < deadline, f"the queue did not finish:\n{status}"
        time.sleep(3)
    assert status.count("Success") == 2, status

    monkeypatch.setenv("COLUMNS", "120")
    shown = run_command([sys.executable, "-m", "clipvideo", "experiments"], dvc_repo).splitlines()
    assert all(len(line) <= 120 for line in shown)
    rows = experiment_rows(shown)
    assert len(rows) == 4  # workspace, the baseline commit, two experiments
    values = [line.strip() for line in shown if line.startswith("    ")]
    assert sorted(values) == ["train.seed=1", "train.seed=2", "train.seed=42", "train.seed=42"]
    by_val = experiment_rows(
        run_command(
            [sys.executable, "-m", "clipvideo", "experiments", "--metric", "val_f1_micro"], dvc_repo
        ).splitlines(),
        "val_f1_micro",
    )
    for name, row in by_val.items():  # the star is the row's best on val, wherever it shows
        best = max(float(value.rstrip("*")) for value in row)
        assert [value.endswith("*") for value in row] == [float(value.rstrip("*")) == best for value in row]
        assert [value.endswith("*") for value in rows[name]] == [value.endswith("*") for value in row]


def test_a_runtime_setting_or_a_typo_never_becomes_an_experiment_and_the_repair_keeps_other_params(dvc_repo: Path):
    """docs/experiments.md, "What never becomes an experiment": the one-line hints, and the repair that removes only
    the bad key, keeping params changed before (an applied experiment's, here edited by hand)."""
    params = dvc_repo / "params.yaml"
    params.write_text(params.read_text().replace("confidence: 0.95", "confidence: 0.9"))  # as `dvc exp apply` leaves
    refused = refused_command(["dvc", "exp", "run", "-S", "download.workers=4"], dvc_repo)
    assert "download.workers" in refused  # DVC: not in params.yaml (it is a setting: settings.yaml)
    hinted = refused_command(["dvc", "exp", "run", "-S", "+download.workers=4"], dvc_repo)  # DVC's own hint
    assert (
        "params.yaml: unknown key download.workers; download.workers is a setting: set it in settings.yaml, not here "
        "(download takes max_height, max_filesize_mb)\n"
    ) in hinted
    typo = refused_command(["dvc", "exp", "run", "-S", "~download.workers", "-S", "+frame_count=8"], dvc_repo)
    assert (
        "params.yaml: unknown top-level key frame_count; did you mean frames_count? known keys: frames_count, dataset, "
    ) in typo
    assert stages_that_ran(typo) == {"check_params"}
    assert "frame_count: 8" in params.read_text()  # DVC wrote it there before the run

    docs = (REPO / "docs" / "experiments.md").read_text()
    assert f"{REPAIR} -S frames_count=8\n" in docs
    run_command([*REPAIR.split(), "-S", "evaluate.seed=3"], dvc_repo)  # a key that reruns evaluate alone
    kept = yaml.safe_load(params.read_text())
    assert "frame_count" not in kept and (kept["evaluate"]["seed"], kept["evaluate"]["confidence"]) == (3, 0.9)
    assert "workers" not in kept["download"]
    assert len(run_command(["dvc", "exp", "list", "--name-only"], dvc_repo).split()) == 1  # the repaired run only


def test_a_bad_variants_file_stops_dvc_repro_at_check_params_before_any_other_stage(dvc_repo: Path):
    """With a change that reruns manifest and everything after it, check_params (the gate of the DAG) still runs
    first and stops the run in one line: nothing downloads or decodes for hours before train@ reads the file."""
    params = dvc_repo / "params.yaml"
    params.write_text(params.read_text().replace("seed: 42", "seed: 7", 1))
    variants = dvc_repo / "variants.yaml"
    variants.write_text(variants.read_text().replace("kind: logreg", "kind: svm", 1))
    refused = refused_command(["dvc", "repro"], dvc_repo)
    assert stages_that_ran(refused) == {"check_params"}
    errors = [line for line in refused.splitlines() if line.startswith("check_params: error:")]
    assert errors == [
        "check_params: error: variants.yaml: logreg.kind='svm': expected one of linear, transformer, logreg, zeroshot"
    ]


def spec_axis_title(spec: dict, channel: str) -> str | None:
    """The title of the first `channel` encoding with one in a vega-lite spec (layers and facets included)."""
    if isinstance(spec, dict):
        encoding = spec.get("encoding", {}).get(channel, {})
        if "title" in encoding:
            return encoding["title"]
        children = list(spec.values())
    else:
        children = spec if isinstance(spec, list) else []
    return next((t for child in children if (t := spec_axis_title(child, channel)) is not None), None)


def test_plots_draw_each_chart_once_with_its_titles_and_a_csv_in_datasets_reruns_nothing(dvc_repo: Path):
    """f1_micro per variant, a loss and a train-f1 chart over the variants with a curve (logreg and zeroshot have
    none), a confusion matrix per variant, and the error images; every chart titled as dvc.yaml says."""
    shown = json.loads(run_command(["dvc", "plots", "show", "--json"], dvc_repo))["data"]
    confusion = [f"confusion_{v}" for v in VARIANTS]
    assert sorted(shown) == sorted(["f1_micro", "train_loss", "train_f1", "val_f1", *confusion, *PNGS])
    assert not (dvc_repo / "plots" / "train" / "logreg.csv").exists()
    definitions = {
        k: v
        for entry in yaml.safe_load((dvc_repo / "dvc.yaml").read_text())["plots"]
        if isinstance(entry, dict)
        for k, v in entry.items()
    }
    for chart in ("f1_micro", "train_loss", "train_f1", "val_f1", *confusion):
        spec = shown[chart][0]["content"]
        assert spec["title"]["text"] == definitions[chart]["title"]
        axes = {channel: spec_axis_title(spec, channel) for channel in ("x", "y")}
        assert axes == {"x": definitions[chart]["x_label"], "y": definitions[chart]["y_label"]}
    files = {point["filename"] for point in shown["train_loss"][0]["content"]["data"]["values"]}
    assert files == {f"{name}.csv" for name, variant in VARIANTS.items() if variant.has_curve}
    # `dvc plots diff` puts two revisions' f1_micro on one chart (the template sets them side by side)
    diff = ["dvc", "plots", "diff", "HEAD", "workspace", "--targets", "f1_micro", "--json"]
    points = json.loads(run_command(diff, dvc_repo))["data"]["f1_micro"][0]["content"]["data"]["values"]
    assert {(point["rev"], point["variant"]) for point in points} == {
        (r, v) for r in ("HEAD", "workspace") for v in VARIANTS
    }

    (dvc_repo / "datasets" / "youtube" / "youtube.csv").write_text("link,title,description,category\n")
    (dvc_repo / "datasets" / "other.csv").write_text("a,b\n")
    assert json.loads(run_command(["dvc", "status", "--json"], dvc_repo)) == {}
    assert run_command(["git", "status", "--porcelain"], dvc_repo).strip() == ""  # git-ignored as well


def test_a_model_registered_as_an_artifact_is_fetched_by_dvc_artifacts_get_and_predicts(dvc_repo: Path, tmp_path: Path):
    """docs/models.md, "Models as artifacts": every model is declared in dvc.yaml's `artifacts`; an annotated
    `<variant>@v<semver>` tag registers a commit's, `dvc artifacts get .` fetches it, and predict uses that file."""
    declared = yaml.safe_load((dvc_repo / "dvc.yaml").read_text())["artifacts"]
    assert {name: entry["type"] for name, entry in declared.items()} == {name: "model" for name in VARIANTS}
    for variant in ("linear", "random_frame-mixup"):
        run_command(["git", "tag", "-a", f"{variant}@v1.0.0", "-m", "baseline", "HEAD"], dvc_repo)
        fetched = tmp_path / f"{variant}.pt"
        run_command(["dvc", "artifacts", "get", ".", variant, "--rev", "v1.0.0", "-o", str(fetched)], dvc_repo)
        assert fetched.read_bytes() == (dvc_repo / "models" / f"{variant}.pt").read_bytes()
    video = next((dvc_repo / "data" / "sample").glob("*.mp4")).relative_to(dvc_repo).as_posix()
    (dvc_repo / "models" / "linear.pt").unlink()  # predict reads the fetched file, not the workspace's
    shown = run_command(
        [sys.executable, "-m", "stages.predict", video, "--model", str(tmp_path / "linear.pt")], dvc_repo
    )
    assert "category: " in shown


def test_the_readme_predict_example_runs_after_dvc_repro(dvc_repo: Path):
    readme = (REPO / "README.md").read_text()
    video, variant = re.search(r"^python -m stages\.predict (data/\S+) --variant (\S+)", readme, re.M).groups()
    assert (dvc_repo / video).is_file()
    shown = run_command([sys.executable, "-m", "stages.predict", video, "--variant", variant], dvc_repo)
    assert "category: " in shown
    note = next(line for line in shown.splitlines() if line.startswith("note: "))  # an untrained encoder's answer
    assert f"\n{note}\n" in readme  # the README shows the same warning under its example's output


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


def test_a_replaced_model_file_under_encoders_or_a_new_decode_budget_reruns_embed_or_frames(dvc_repo: Path):
    """Files that change a result are dependencies: the tiny model's config is encoders/tiny-test-vit.json (conftest),
    and dvc.yaml lists encoders/ for embed and embed_text; the decode budget is a param of frames."""
    config = dvc_repo / "encoders" / "tiny-test-vit.json"
    assert yaml.safe_load((dvc_repo / "params.yaml").read_text())["embed"]["model"] == "encoders/tiny-test-vit.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "embed_dim": 16}))  # another model, same name
    assert set(json.loads(run_command(["dvc", "status", "--json"], dvc_repo))) == {"embed", "embed_text"}

    run_command(["git", "checkout", "--", "encoders"], dvc_repo)
    assert json.loads(run_command(["dvc", "status", "--json"], dvc_repo)) == {}
    params = yaml.safe_load((dvc_repo / "params.yaml").read_text())
    params["frames"]["max_decode_megapixels"] = 500_000
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert set(json.loads(run_command(["dvc", "status", "--json"], dvc_repo))) == {"check_params", "frames"}
