"""The split step: a stratified, seeded train/test split of the downloaded videos -> data/split.csv."""

from __future__ import annotations

from collections import Counter

from sklearn.model_selection import train_test_split
from tabulate import tabulate

from clipvideo.config.schema import SplitParams
from clipvideo.core.contracts import SPLIT_COLUMNS, SPLITS, VIDEOS_COLUMNS, Status
from clipvideo.core.errors import PipelineError
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.tables import read_table, write_table


def stratified_split(rows: list[dict[str, str]], test_size: float, seed: int) -> list[dict[str, str]]:
    """Each category split in the same proportion; the same seed gives the same split."""
    per_category = Counter(row["category"] for row in rows)
    too_small = sorted(c for c, n in per_category.items() if n < 2)
    if too_small:
        raise PipelineError(f"split: category {too_small[0]!r} has fewer than 2 downloaded videos; cannot stratify")
    ordered = sorted(rows, key=lambda row: row["id"])
    n_test = max(len(per_category), round(test_size * len(ordered)))
    if n_test >= len(ordered) - len(per_category) + 1:
        raise PipelineError(
            f"split: split.test_size={test_size} leaves no training video in some category of {len(ordered)} videos"
        )
    train, test = train_test_split(
        ordered, test_size=n_test, random_state=seed, stratify=[row["category"] for row in ordered]
    )
    assigned = {row["id"]: "train" for row in train} | {row["id"]: "test" for row in test}
    return [{"id": r["id"], "category": r["category"], "split": assigned[r["id"]]} for r in ordered]


def split_videos(paths: ProjectPaths, split: SplitParams, seed: int) -> str:
    """data/split.csv from the `ok` rows of data/videos.csv; prints the counts, returns the summary line."""
    videos = [row for row in read_table(paths.videos_table, VIDEOS_COLUMNS) if row["status"] == Status.OK]
    rows = stratified_split(videos, split.test_size, seed)
    write_table(paths.split_table, SPLIT_COLUMNS, rows)
    counts = Counter((row["category"], row["split"]) for row in rows)
    categories = sorted({row["category"] for row in rows})
    print(tabulate([[c, *(counts[(c, part)] for part in SPLITS)] for c in categories], headers=["category", *SPLITS]))
    n_test = sum(1 for row in rows if row["split"] == "test")
    return f"{len(rows) - n_test} train / {n_test} test -> {paths.split_table}"
