"""The leakage check on a rendered sample with series: the grouped split leaves no near-duplicate across sides,
a random video-by-video split of the same videos leaves some, each two episodes of one series."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sklearn.model_selection import train_test_split

from clipvideo.config.loading import load_params
from clipvideo.core.contracts import SPLIT_COLUMNS
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.tables import read_table, write_table
from clipvideo.evaluation.leakage import check_leakage
from tests.conftest import REPO, SHRUNK, write_params

THRESHOLD = load_params(REPO / "params.yaml").check_leakage  # the default


@pytest.fixture(scope="module")
def with_series(tmp_path_factory: pytest.TempPathFactory, tiny_model_config: Path) -> ProjectPaths:
    """4 videos per category, the first 3 one series, through the real stages up to the split."""
    from stages import download, embed, frames, manifest, split

    root = tmp_path_factory.mktemp("series") / "project"
    root.mkdir()
    overrides = {
        "sample.videos_per_category": 4,
        "sample.series_per_category": 1,
        "split.seed": 14,
        "split.test_size": 0.25,
        "split.val_size": 0.25,
    }  # the series of art_music alone in test
    write_params(root, {**SHRUNK, "embed.model": str(tiny_model_config), **overrides, "download.min_videos": 4})
    for stage in (manifest, download, frames, embed, split):
        assert stage.main(["--root", str(root)]) == 0
    return ProjectPaths(root)


def test_the_grouped_split_leaves_no_near_duplicate_and_a_random_split_does(with_series: ProjectPaths, tmp_path):
    rows = read_table(with_series.split_table, SPLIT_COLUMNS)
    assert sum(row["group"] != row["id"] for row in rows) == 12  # a series of 3 in each of the 4 categories
    check_leakage(with_series, THRESHOLD)
    grouped = json.loads(with_series.leakage_report.read_text())
    assert grouped["n_test"] > 0 and grouped["near_duplicates"] == 0 and grouped["pairs"] == []
    assert json.loads(with_series.leakage_metrics.read_text()) == {"near_duplicates": 0, "n_test": grouped["n_test"]}

    # the same videos split at random, video by video, as train_test_split does: series straddle the sides
    copy = ProjectPaths(tmp_path / "random")
    shutil.copytree(with_series.root, copy.root)
    train, test = train_test_split(rows, test_size=0.5, random_state=0, stratify=[r["category"] for r in rows])
    write_table(
        copy.split_table,
        SPLIT_COLUMNS,
        [{**r, "split": "train"} for r in train] + [{**r, "split": "test"} for r in test],
    )
    check_leakage(copy, THRESHOLD)
    pairs = json.loads(copy.leakage_report.read_text())["pairs"]
    group = {row["id"]: row["group"] for row in rows}
    assert pairs, "a random split of the sample's series leaves them on both sides"
    assert all(group[pair["test_id"]] == group[pair["train_id"]] != pair["test_id"] for pair in pairs)
