"""The leakage check on the sample: a series split across sides shows as near-duplicates, the grouped split
leaves none."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sklearn.model_selection import train_test_split

from clipvideo.config.loading import load_params
from clipvideo.core.contracts import SPLIT_COLUMNS
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.tables import read_table, write_table
from clipvideo.evaluation.leakage import check_leakage
from tests.conftest import REPO

THRESHOLD = load_params(REPO / "params.yaml").check_leakage  # the default


def test_the_grouped_split_leaves_no_near_duplicate_and_a_random_split_does(embedded: ProjectPaths, tmp_path: Path):
    rows = read_table(embedded.split_table, SPLIT_COLUMNS)
    assert any(row["group"] != row["id"] for row in rows)  # the sample has series
    check_leakage(embedded, THRESHOLD)
    grouped = json.loads(embedded.leakage_report.read_text())
    assert grouped["near_duplicates"] == 0 and grouped["pairs"] == []
    assert json.loads(embedded.leakage_metrics.read_text()) == {"near_duplicates": 0, "n_test": grouped["n_test"]}

    # the same videos split at random, video by video, as train_test_split does: series straddle the sides
    copy = ProjectPaths(tmp_path / "random")
    shutil.copytree(embedded.root, copy.root)
    train, test = train_test_split(rows, test_size=0.5, random_state=0, stratify=[r["category"] for r in rows])
    write_table(copy.split_table, SPLIT_COLUMNS, [{**r, "split": "train"} for r in train] +
                [{**r, "split": "test"} for r in test])  # fmt: skip
    check_leakage(copy, THRESHOLD)
    pairs = json.loads(copy.leakage_report.read_text())["pairs"]
    group = {row["id"]: row["group"] for row in rows}
    assert pairs, "a random split of the sample's series leaves them on both sides"
    assert all(group[pair["test_id"]] == group[pair["train_id"]] != pair["test_id"] for pair in pairs)
