"""The split step: each series of downloaded videos on one side, train, val or test -> data/split.csv.

A video's side is a keyed hash of its group (its series, or itself) and `split.seed`: nothing else. So adding,
losing or re-fetching other videos never moves it, a series never straddles two sides, and each category's
shares are `split.test_size` and `split.val_size` up to the chance of the hash (the summary states the
tolerance). Rows whose labels conflict never get here: the manifest makes them `invalid` and this step counts
them (docs/models.md#the-split).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter

from tabulate import tabulate

from clipvideo.acquire.links import CONFLICTING_LABELS, reason_kind
from clipvideo.config.schema import SplitParams
from clipvideo.core.contracts import MANIFEST_COLUMNS, SPLIT_COLUMNS, SPLITS, VIDEOS_COLUMNS, Status
from clipvideo.core.errors import PipelineError
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.tables import read_table, write_table

TOLERANCE_SDS = 3  # a category's share may stray this many standard deviations of the hash's chance


def hashed_share(group: str, seed: int) -> float:
    """A number in [0, 1) fixed by the group and the seed alone (sha256: the same on every machine and run)."""
    digest = hashlib.sha256(f"{seed}\0{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def side_of(group: str, split: SplitParams) -> str:
    share = hashed_share(group, split.seed)
    if share < split.test_size:
        return "test"
    return "val" if share < split.test_size + split.val_size else "train"


def share_tolerance(group_sizes: list[int], share: float) -> float:
    """TOLERANCE_SDS standard deviations of a category's share on a side when each group lands there with
    probability `share`: groups, not videos, are the draws, so one large series widens it."""
    total = sum(group_sizes)
    return TOLERANCE_SDS * math.sqrt(share * (1 - share) * sum(s * s for s in group_sizes)) / total if total else 0.0


def grouped_split(rows: list[dict[str, str]], series: dict[str, str], split: SplitParams) -> list[dict[str, str]]:
    """split.csv rows, sorted by id: each video's side from its group (its series, else its id)."""
    out = []
    for row in sorted(rows, key=lambda row: row["id"]):
        group = series.get(row["id"]) or row["id"]
        out.append({"id": row["id"], "category": row["category"], "split": side_of(group, split), "group": group})
    return out


def shares_table(rows: list[dict[str, str]], split: SplitParams) -> tuple[str, list[str]]:
    """Counts per category and side, each side's share with its tolerance; and the warnings (an empty side, a
    share outside its tolerance)."""
    expected = {"train": 1 - split.test_size - split.val_size, "val": split.val_size, "test": split.test_size}
    body, warnings = [], []
    for category in sorted({row["category"] for row in rows}):
        mine = [row for row in rows if row["category"] == category]
        sizes = list(Counter(row["group"] for row in mine).values())
        counts = Counter(row["split"] for row in mine)
        cells = []
        for side in SPLITS:
            share, tolerance = counts[side] / len(mine), share_tolerance(sizes, expected[side])
            cells.append(f"{counts[side]} ({share:.2f} ± {tolerance:.2f})")
            if counts[side] == 0 and expected[side] > 0:
                warnings.append(f"split: category {category!r} has no {side} video")
            elif abs(share - expected[side]) > tolerance:
                warnings.append(
                    f"split: category {category!r}: {side} share {share:.2f}, expected {expected[side]:.2f}"
                    f" ± {tolerance:.2f}"
                )
        body.append([category, len(sizes), *cells])
    headers = ["category", "groups", *(f"{side} (share ± tol.)" for side in SPLITS)]
    return tabulate(body, headers=headers), warnings


def split_videos(paths: ProjectPaths, split: SplitParams) -> str:
    """data/split.csv from the `ok` rows of data/videos.csv and the manifest's series; prints the counts, returns
    the summary line."""
    videos = [row for row in read_table(paths.videos_table, VIDEOS_COLUMNS) if row["status"] == Status.OK]
    manifest = read_table(paths.manifest, MANIFEST_COLUMNS)
    series = {row["id"]: row["series"] for row in manifest if row["status"] == Status.VALID}
    conflicts = sum(1 for row in manifest if reason_kind(row["reason"]) == CONFLICTING_LABELS)
    rows = grouped_split(videos, series, split)
    without_training = sorted({r["category"] for r in videos} - {r["category"] for r in rows if r["split"] == "train"})
    if without_training:
        raise PipelineError(
            f"category {without_training[0]!r} has no training video (split.seed={split.seed}, "
            f"split.test_size={split.test_size}, split.val_size={split.val_size}); it needs more videos"
        )
    write_table(paths.split_table, SPLIT_COLUMNS, rows)
    table, warnings = shares_table(rows, split)
    print(table)
    for warning in warnings:
        print(warning)
    counts = Counter(row["split"] for row in rows)
    sizes = Counter(row["group"] for row in rows)
    in_series = sum(n for n in sizes.values() if n > 1)
    return (
        f"{counts['train']} train / {counts['val']} val / {counts['test']} test, {in_series} videos in series "
        f"(each series on one side), {conflicts} manifest rows dropped for conflicting labels -> {paths.split_table}"
    )
