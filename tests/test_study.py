"""The study's protocol as one command, run offline as far as the network allows: its params pass the checks,
the manifest and the split run on the public CSV, and the summary shows the study's numbers only under its
protocol."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from clipvideo.cli.study import study_command
from clipvideo.config.loading import load_params
from clipvideo.core.contracts import MANIFEST_COLUMNS, SPLIT_COLUMNS, VIDEOS_COLUMNS, Status
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.tables import read_table, write_table
from clipvideo.evaluation.reference import load_reference, protocol_differences
from clipvideo.evaluation.report import summary_table
from stages import manifest, split
from tests.conftest import REPO, write_params

PUBLIC_CSV = REPO.parent / "shared" / "data" / "youtube.csv"


def overrides(command: list[str]) -> dict[str, object]:
    """`-S key=value` pairs of a `dvc exp run` command, each value parsed as DVC parses it (YAML)."""
    pairs = [command[i + 1] for i, word in enumerate(command) if word == "-S"]
    return {key: yaml.safe_load(value) for key, value in (pair.split("=", 1) for pair in pairs)}


def test_the_command_sets_the_whole_protocol_and_prints_quoted(capsys):
    from clipvideo.cli import study

    reference = load_reference(REPO / "reference.yaml")
    command = study_command(ProjectPaths(REPO), "study", ["--queue"])
    assert command[:5] == ["dvc", "exp", "run", "-n", "study"] and command[-1] == "--queue"
    assert overrides(command) == {**reference.protocol, **reference.also_set}
    assert study.main(["--root", str(REPO), "--print"]) == 0
    printed = capsys.readouterr().out.strip()
    assert shlex.split(printed) == study_command(ProjectPaths(REPO), "study")


@pytest.mark.skipif(not PUBLIC_CSV.is_file(), reason="the public CSV is not beside the repository")
def test_the_protocol_runs_offline_up_to_the_download_on_the_public_csv(tmp_path: Path):
    command = study_command(ProjectPaths(REPO), "study")
    write_params(tmp_path, {**overrides(command), "dataset.csv": "datasets/youtube/youtube.csv"})
    (tmp_path / "datasets" / "youtube").mkdir(parents=True)
    shutil.copyfile(PUBLIC_CSV, tmp_path / "datasets" / "youtube" / "youtube.csv")
    params = load_params(tmp_path / "params.yaml")
    assert protocol_differences(load_reference(tmp_path / "reference.yaml"), params) == []

    assert manifest.main(["--root", str(tmp_path)]) == 0
    paths = ProjectPaths(tmp_path)
    valid = [row for row in read_table(paths.manifest, MANIFEST_COLUMNS) if row["status"] == Status.VALID]
    # the download needs YouTube: every valid video taken as downloaded, as the study's 1,728 of them were
    write_table(
        paths.videos_table,
        VIDEOS_COLUMNS,
        [
            {
                "id": r["id"],
                "category": r["category"],
                "status": "ok",
                "reason": "",
                "path": "",
                "bytes": 1,
                "duration_s": 1,
            }
            for r in valid
        ],
    )
    assert split.main(["--root", str(tmp_path)]) == 0
    rows = read_table(paths.split_table, SPLIT_COLUMNS)
    test_share = sum(row["split"] == "test" for row in rows) / len(rows)
    assert abs(test_share - 0.1) < 0.03


def report(variant: str, f1: float, val: float) -> dict:
    per_class = {c: {"precision": f1, "recall": f1, "f1": f1, "support": 2} for c in ("food", "travel")}
    return {
        "variant": variant,
        "n_test": 4,
        "confidence": 0.95,
        "f1_micro": f1,
        "f1_micro_low": None,
        "f1_micro_high": None,
        "f1_macro": f1,
        "f1_macro_low": None,
        "f1_macro_high": None,
        "accuracy": f1,
        "balanced_accuracy": f1,
        "per_class": per_class,
        "test_set": "abc",
        "n_test_missing": 0,
        "val_f1_micro": val,
        "encoder": "e",
    }


def test_the_summary_ranks_on_val_and_cites_the_study_only_under_its_protocol():
    reference = load_reference(REPO / "reference.yaml")
    ranked = [report("linear", 0.5, 0.9), report("transformer", 1.0, 0.8)]  # val chose linear; test prefers the other
    leakage = {"near_duplicates": 0, "n_test": 4, "cosine": 0.99}
    matching = summary_table(ranked, {"transformer": [0.0, 1.0]}, reference, [], leakage)
    assert "Chosen on val: linear." in matching
    assert "| linear | 0.900 | 0.500 |" in matching and "reference f1_micro (173 videos)" in matching
    assert "| 0.965 |" in matching and "| 0.987 |" in matching
    differing = summary_table(ranked, {"transformer": [0.0, 1.0]}, reference, ["frames_count=16 (study: 100)"], leakage)
    assert "0.965" not in differing and "reference f1_micro" not in differing
    assert "protocol differs in frames_count=16 (study: 100)" in differing
    assert "Near-duplicates across sides: 0 of 4 test videos" in differing


def test_the_default_params_differ_from_the_protocol_and_say_where():
    differences = protocol_differences(load_reference(REPO / "reference.yaml"), load_params(REPO / "params.yaml"))
    assert "frames_count=16 (study: 100)" in differences and "dataset.source=sample (study: youtube)" in differences
