"""The split: a keyed hash of each video's series, so other videos never move it; series on one side; shares
within the stated tolerance; label conflicts dropped and counted; on the public CSV when it is present."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest

from clipvideo.acquire.links import CONFLICTING_LABELS, reason_kind
from clipvideo.acquire.manifest import read_source_csv, youtube_rows
from clipvideo.acquire.series import series_key
from clipvideo.config.schema import SplitParams
from clipvideo.core.contracts import MANIFEST_COLUMNS, SPLIT_COLUMNS, VIDEOS_COLUMNS, Status
from clipvideo.core.errors import ParamsError
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.tables import read_table, write_table
from clipvideo.modeling.split import grouped_split, share_tolerance, shares_table, side_of
from stages import split as split_stage
from tests.conftest import write_params

PUBLIC_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "youtube.csv"
CATEGORIES = ["food", "art_music", "travel", "history"]
DEFAULT = SplitParams(seed=42, test_size=0.25, val_size=0.2)


def videos(per_category: dict[str, int], prefix: str = "v") -> list[dict[str, str]]:
    return [{"id": f"{prefix}{c}{i:04d}", "category": c} for c, n in per_category.items() for i in range(n)]


def sides(rows: list[dict[str, str]]) -> dict[str, str]:
    return {row["id"]: row["split"] for row in rows}


def test_adding_and_losing_videos_moves_no_other_video():
    base = videos({"food": 40, "travel": 40, "history": 20})
    series = {row["id"]: f"series {i // 3}" for i, row in enumerate(base[:30])}  # ten series of three
    before = sides(grouped_split(base, series, DEFAULT))
    changed = base[1:] + videos({"food": 1}, prefix="new")  # one video lost, one added
    after = sides(grouped_split(changed, series, DEFAULT))
    assert {i for i in after if i in before and after[i] != before[i]} == set()
    assert set(after) == set(before) - {base[0]["id"]} | {"newfood0000"}


def test_the_split_seed_alone_moves_videos_and_the_same_seed_gives_the_same_split():
    base = videos({"food": 30, "travel": 30})
    assert grouped_split(base, {}, DEFAULT) == grouped_split(list(reversed(base)), {}, DEFAULT)
    other = sides(grouped_split(base, {}, DEFAULT.model_copy(update={"seed": 7})))
    assert other != sides(grouped_split(base, {}, DEFAULT))


def test_a_series_stays_on_one_side():
    base = videos({"food": 60, "travel": 60})
    series = {row["id"]: f"show {i % 12}" for i, row in enumerate(base)}  # 12 series of ten
    rows = grouped_split(base, series, DEFAULT)
    side_of_series = defaultdict(set)
    for row in rows:
        side_of_series[row["group"]].add(row["split"])
    assert all(len(found) == 1 for found in side_of_series.values())
    assert {side for found in side_of_series.values() for side in found} == {"train", "val", "test"}


def test_shares_stay_within_the_stated_tolerance():
    rows = grouped_split(videos({"food": 1500, "travel": 900, "history": 300}), {}, DEFAULT)
    table, warnings = shares_table(rows, DEFAULT)
    assert warnings == []
    assert "food" in table and "± 0.03" in table  # 3 sd of a share of 0.25 over 1,500 videos: 0.034
    counts = Counter((row["category"], row["split"]) for row in rows)
    for category, n in (("food", 1500), ("travel", 900), ("history", 300)):
        for side, share in (("test", 0.25), ("val", 0.2)):
            assert abs(counts[(category, side)] / n - share) <= share_tolerance([1] * n, share)


def test_a_large_series_widens_the_tolerance():
    assert share_tolerance([1] * 100, 0.1) == pytest.approx(0.09)
    assert share_tolerance([50] + [1] * 50, 0.1) > 0.25


def test_val_and_test_shares_must_leave_training_videos():
    with pytest.raises(ParamsError, match=r"split\.test_size \+ split\.val_size = 0\.9"):
        SplitParams(seed=0, test_size=0.5, val_size=0.4)


def test_series_keys_come_from_a_videos_own_row():
    channel = "Tanya Khanijow\n671K subscribers\nSUBSCRIBE\nThe journey..."
    assert series_key("Ep 1| Travelling", channel) == series_key("Ep 2| Arunachal", channel) == "desc: tanya khanijow"
    assert series_key("Years of Chinese History Ep 3", "") == series_key("Years of Chinese history ep. 14", "")
    assert series_key("Years of Chinese History Ep 3", "") == "title: years of chinese history ep"
    assert series_key("", "\n\n") == ""


def test_conflicting_labels_drop_every_row_of_the_video():
    source = [
        {"link": "aaaaaaaaaaa", "title": "a", "description": "", "category": "food"},
        {"link": "bbbbbbbbbbb", "title": "b", "description": "", "category": "travel"},
        {"link": "aaaaaaaaaaa", "title": "a again", "description": "", "category": "travel"},
        {"link": "bbbbbbbbbbb", "title": "b again", "description": "", "category": "travel"},
    ]
    rows = youtube_rows(source, CATEGORIES)
    assert [(row["status"], reason_kind(row["reason"])) for row in rows] == [
        (Status.INVALID, CONFLICTING_LABELS),
        (Status.VALID, ""),
        (Status.INVALID, CONFLICTING_LABELS),
        (Status.INVALID, "duplicate"),
    ]
    assert rows[0]["reason"] == "conflicting labels: 'food' on row 1, 'travel' on row 3"


def write_project(root: Path, rows: list[dict[str, str]], series: dict[str, str], conflicts: int = 0) -> ProjectPaths:
    paths = ProjectPaths(root)
    paths.data.mkdir(parents=True, exist_ok=True)
    write_table(
        paths.videos_table,
        VIDEOS_COLUMNS,
        [
            {**row, "status": "ok", "reason": "", "path": f"data/videos/{row['id']}.mp4", "bytes": 1, "duration_s": 1}
            for row in rows
        ],
    )
    manifest = [
        {
            "id": r["id"],
            "url": f"https://example.com/{r['id']}",
            "category": r["category"],
            "title": r["id"],
            "series": series.get(r["id"], ""),
            "status": "valid",
            "reason": "",
        }
        for r in rows
    ]
    reason = f"{CONFLICTING_LABELS}: 'food' on row 1, 'travel' on row 2"
    manifest += [
        {
            "id": f"row-{i}",
            "url": "x",
            "category": "food",
            "title": "",
            "series": "",
            "status": "invalid",
            "reason": reason,
        }
        for i in range(conflicts)
    ]
    write_table(paths.manifest, MANIFEST_COLUMNS, manifest)
    return paths


def test_the_stage_writes_groups_and_counts_conflicts(tmp_path: Path, capsys):
    rows = videos({"food": 12, "travel": 12, "history": 12, "art_music": 12})
    series = {row["id"]: "one show" for row in rows[:5]}
    write_params(tmp_path, {})
    paths = write_project(tmp_path, rows, series, conflicts=2)
    assert split_stage.main(["--root", str(paths.root)]) == 0
    written = read_table(paths.split_table, SPLIT_COLUMNS)
    assert len({row["split"] for row in written if row["group"] == "one show"}) == 1
    assert sum(row["group"] == "one show" for row in written) == 5
    out = capsys.readouterr().out
    assert "5 videos in series" in out and "2 manifest rows dropped for conflicting labels" in out

    # a re-fetch: one video lost, one gained; every other video keeps its side in the written file
    before = sides(written)
    write_project(paths.root, rows[1:] + videos({"travel": 1}, prefix="new"), series)
    assert split_stage.main(["--root", str(paths.root)]) == 0
    after = sides(read_table(paths.split_table, SPLIT_COLUMNS))
    assert all(after[i] == before[i] for i in after if i in before)


def test_a_category_without_training_videos_is_one_line(tmp_path: Path, capsys):
    rows = videos({"food": 12, "travel": 12})
    series = {row["id"]: "all of travel" for row in rows if row["category"] == "travel"}
    seed = next(s for s in range(100) if side_of("all of travel", DEFAULT.model_copy(update={"seed": s})) != "train")
    write_params(tmp_path, {"split.seed": seed, "split.test_size": 0.25, "split.val_size": 0.2})
    paths = write_project(tmp_path, rows, series)
    assert split_stage.main(["--root", str(paths.root)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("split: error: category 'travel' has no training video") and "\n" not in error


@pytest.mark.skipif(not PUBLIC_CSV.is_file(), reason="the public CSV is not beside the repository")
def test_the_public_csv_splits_by_series_within_tolerance():
    manifest = youtube_rows(read_source_csv(PUBLIC_CSV), CATEGORIES)
    valid = [row for row in manifest if row["status"] == Status.VALID]
    conflicts = {row["url"] for row in manifest if reason_kind(row["reason"]) == CONFLICTING_LABELS}
    assert len(valid) >= 2000 and len(conflicts) >= 5  # ids labelled twice never reach the split
    study = SplitParams(seed=42, test_size=0.1, val_size=0.1)
    rows = grouped_split(valid, {row["id"]: row["series"] for row in valid}, study)
    side_of_series = defaultdict(set)
    for row in rows:
        side_of_series[row["group"]].add(row["split"])
    assert all(len(found) == 1 for found in side_of_series.values())
    sizes = Counter(row["group"] for row in rows)
    assert sum(n for n in sizes.values() if n > 1) > len(rows) // 2  # most videos share a channel with another
    _, warnings = shares_table(rows, study)
    assert warnings == []
