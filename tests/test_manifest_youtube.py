"""The youtube manifest: every CSV row judged offline, valid or invalid with a reason."""

from __future__ import annotations

import csv
import os
import sys
from collections import Counter
from pathlib import Path

import pytest

from clipvideo.acquire.links import reason_kind
from clipvideo.core.contracts import MAX_TEXT_CHARS
from clipvideo.core.ids import is_safe_id
from clipvideo.core.paths import ProjectPaths
from stages import download, manifest
from tests.conftest import REPO, write_params
from tests.test_stages import read_csv

SHARED_CSV = REPO.parent / "shared" / "data" / "youtube.csv"
CATEGORIES = ["food", "art_music", "travel", "history"]


def write_source(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["link", "title", "description", "category"])
        for link, title, category in rows:
            writer.writerow(
                [link, title, f'{title}\n1.2M subscribers\nSUBSCRIBE\n"quoted", on lines\nSHOW MORE', category]
            )
    return path


def youtube_project(root: Path, csv_path: Path) -> ProjectPaths:
    write_params(root, {"dataset.source": "youtube", "dataset.csv": str(csv_path)})
    return ProjectPaths(root)


def test_shared_kaggle_csv(tmp_path: Path, capsys) -> None:
    """The public CSV itself (never copied into the repo). CI lays shared/ beside the clone, so there a missing
    copy is a failure, not a skip; elsewhere it is skipped with the path it looked for."""
    if not SHARED_CSV.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED_CSV} is missing: CI must test against the public dataset CSV")
        pytest.skip(f"{SHARED_CSV} not present")
    paths = youtube_project(tmp_path, SHARED_CSV)
    assert manifest.main(["--root", str(tmp_path)]) == 0
    rows = read_csv(paths.manifest)
    assert len(rows) == 3599
    assert Counter(row["category"] for row in rows) == {"travel": 1156, "art_music": 947, "food": 903, "history": 593}
    assert {row["status"] for row in rows} == {"valid", "invalid"}
    assert all(row["reason"] for row in rows if row["status"] == "invalid")
    assert all(is_safe_id(row["id"]) for row in rows if row["status"] == "valid")
    assert len({row["id"] for row in rows}) == len(rows)
    kinds = Counter(reason_kind(row["reason"]) for row in rows if row["status"] == "invalid")
    assert set(kinds) == {"malformed id", "duplicate", "conflicting labels"} and kinds["duplicate"] > 0
    assert kinds["conflicting labels"] == 10  # 5 videos labelled twice
    assert list(paths.sample_videos.iterdir()) == []  # the youtube source renders no sample
    out = capsys.readouterr().out
    assert "malformed id" in out and "duplicate" in out and "3599 rows" in out


def test_rows_are_judged_without_the_network(tmp_path: Path, capsys) -> None:
    source = write_source(
        tmp_path / "videos.csv",
        [
            ("i9E_Blai8vk", "bare id", "travel"),
            ("https://www.youtube.com/watch?v=HzRMV2keMcU&t=10s", "watch url", "food"),
            ("https://youtu.be/_64diyTtjwQ", "short url", "history"),
            ("https://example.org/clips/1.mp4", "other http url", "art_music"),
            ("r284c-q8oY", "truncated id", "travel"),
            ("https://www.youtube.com/watch?v=r284c", "truncated url", "travel"),
            ("#NAME?", "spreadsheet damage", "food"),
            ("CdQjDOahkdY", "unknown category", "sports"),
            ("USGN-aTzlG4", "no category", ""),
            ("i9E_Blai8vk", "repeat", "travel"),
            ("../../x", "traversal", "food"),
            ("/etc/passwd", "absolute", "food"),
            ("file:///etc/passwd", "file url", "food"),
            ("abc/def/ghi", "slashes", "food"),
            ("$(rm -rf ~)", "shell", "food"),
            ("https://" + "a" * 3000 + ".com/", "very long", "food"),
            ("AAAAAAAAAAA", "labelled food", "food"),
            ("https://youtu.be/AAAAAAAAAAA", "labelled travel", "travel"),
        ],
    )
    paths = youtube_project(tmp_path, source)
    assert manifest.main(["--root", str(tmp_path)]) == 0
    rows = read_csv(paths.manifest)
    judged = [(row["title"], row["status"], reason_kind(row["reason"])) for row in rows]
    assert judged == [
        ("bare id", "valid", ""),
        ("watch url", "valid", ""),
        ("short url", "valid", ""),
        ("other http url", "valid", ""),
        ("truncated id", "invalid", "malformed id"),
        ("truncated url", "invalid", "malformed id"),
        ("spreadsheet damage", "invalid", "malformed id"),
        ("unknown category", "invalid", "unknown category"),
        ("no category", "invalid", "empty category"),
        ("repeat", "invalid", "duplicate"),
        ("traversal", "invalid", "malformed id"),
        ("absolute", "invalid", "malformed id"),
        ("file url", "invalid", "unsupported url"),
        ("slashes", "invalid", "malformed id"),
        ("shell", "invalid", "malformed id"),
        ("very long", "invalid", "malformed id"),
        ("labelled food", "invalid", "conflicting labels"),  # no true label: neither row wins
        ("labelled travel", "invalid", "conflicting labels"),
    ]
    assert [row["id"] for row in rows[:3]] == ["i9E_Blai8vk", "HzRMV2keMcU", "_64diyTtjwQ"]
    assert rows[1]["url"] == "https://www.youtube.com/watch?v=HzRMV2keMcU"
    assert is_safe_id(rows[3]["id"]) and rows[3]["url"] == "https://example.org/clips/1.mp4"
    assert not any(is_safe_id(row["id"]) for row in rows if row["status"] == "invalid")
    assert "same video as row 1 (labelled travel)" in rows[9]["reason"]
    assert "'sports', expected one of food, art_music, travel, history" in rows[7]["reason"]
    assert "unknown category" in capsys.readouterr().out


def test_missing_csv_without_kaggle_access_says_where_to_put_it(tmp_path: Path, monkeypatch, capsys) -> None:
    import kagglehub

    def offline(handle: str, *args: object, **kwargs: object) -> str:  # the error branch: no network here
        raise ConnectionError(f"cannot reach kaggle.com for {handle}")

    monkeypatch.setattr(kagglehub, "dataset_download", offline)
    youtube_project(tmp_path, Path("datasets/youtube.csv"))
    assert manifest.main(["--root", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "https://www.kaggle.com/datasets/rajatrc1705/youtube-videos-dataset" in error
    assert "save it as datasets/youtube.csv" in error and "ConnectionError" in error


def test_csv_without_the_expected_columns_is_named(tmp_path: Path, capsys) -> None:
    source = tmp_path / "other.csv"
    source.write_text("url,label\nhttps://youtu.be/i9E_Blai8vk,travel\n", encoding="utf-8")
    youtube_project(tmp_path, source)
    assert manifest.main(["--root", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert str(source) in error and "missing column(s) link, title, category" in error


def test_stage_runs_as_a_module(tmp_path: Path) -> None:
    """`python -m stages.manifest` on the youtube source prints counts per category and reason."""
    import subprocess

    source = write_source(tmp_path / "videos.csv", [("i9E_Blai8vk", "a", "travel"), ("r284c-q8oY", "b", "food")])
    youtube_project(tmp_path, source)
    done = subprocess.run(
        [sys.executable, "-m", "stages.manifest", "--root", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "malformed id" in done.stdout and "2 rows (1 valid)" in done.stdout


def test_a_huge_description_is_accepted(tmp_path: Path) -> None:
    """Descriptions are unused; one over the csv module's 128 KiB default must not reject the whole dataset."""
    source = tmp_path / "videos.csv"
    with source.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["link", "title", "description", "category"])
        writer.writerow(["i9E_Blai8vk", "long", "word " * 100_000, "travel"])
        writer.writerow(["HzRMV2keMcU", "short", "fine", "food"])
    paths = youtube_project(tmp_path, source)
    assert manifest.main(["--root", str(tmp_path)]) == 0
    assert [row["status"] for row in read_csv(paths.manifest)] == ["valid", "valid"]


def test_a_field_over_the_limit_names_its_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("clipvideo.core.tables.MAX_FIELD_CHARS", 1000)
    rows = [("i9E_Blai8vk", "short", "food"), ("HzRMV2keMcU", "x" * 2000, "food")]
    source = write_source(tmp_path / "videos.csv", rows)
    youtube_project(tmp_path, source)
    assert manifest.main(["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"manifest: error: {source}:7: not a readable CSV (field larger than field limit")
    assert "\n" not in err


def test_nul_and_control_characters_never_reach_the_console_or_the_manifest(tmp_path: Path, capsys) -> None:
    """Titles lose them; a category is matched as given (outer whitespace trimmed), so one with a control
    character inside is unknown; an invalid row keeps its url and category escaped, as evidence."""
    source = write_source(
        tmp_path / "videos.csv",
        [
            ("i9E_Blai8vk", "ti\x00tle\x1b[31m red", " travel\n"),
            ("HzRMV2keMcU", "ok", "fo\x1bod\x07"),
            ("_64diyTtjwQ", "newline", "fo\nod"),
            ("https://example.org/\x00\x1b[2J", "url", "food"),
        ],
    )
    paths = youtube_project(tmp_path, source)
    assert manifest.main(["--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    manifest_text = paths.manifest.read_text(encoding="utf-8")
    assert not any(c in out + manifest_text for c in "\x00\x1b\x07")
    rows = read_csv(paths.manifest)
    assert rows[0]["title"] == "title[31m red" and rows[0]["category"] == "travel" and rows[0]["status"] == "valid"
    assert [(row["status"], row["category"]) for row in rows[1:3]] == [
        ("invalid", "fo\\x1bod\\x07"),
        ("invalid", "fo\\nod"),
    ]
    assert rows[2]["reason"] == "unknown category: 'fo\\nod', expected one of food, art_music, travel, history"
    assert rows[3]["url"] == "https://example.org/\\x00\\x1b[2J" and rows[3]["status"] == "invalid"


def test_a_long_title_is_cut_at_the_manifest_and_the_download_reads_it(tmp_path: Path, capsys) -> None:
    """A title over the csv module's default 131,072-character field limit used to stop the download stage on
    every rerun; it is cut to MAX_TEXT_CHARS and says how long it was."""
    long_title = "word " * 26_214 + "end"  # 131,073 characters
    rows = [("#NAME?", long_title, "food"), ("i9E_Blai8vk", "x" * 300, "sports")]  # invalid: nothing to fetch
    source = write_source(tmp_path / "videos.csv", rows)
    paths = youtube_project(tmp_path, source)
    assert manifest.main(["--root", str(tmp_path)]) == 0
    titles = [row["title"] for row in read_csv(paths.manifest)]
    assert [len(title) <= MAX_TEXT_CHARS for title in titles] == [True, True]
    assert titles[0].startswith("word word") and titles[0].endswith("... [cut from 131,073 characters]")
    assert titles[1].endswith("... [cut from 300 characters]")
    assert download.main(["--root", str(tmp_path)]) == 2  # read whole: no video to fetch, fewer than min_videos
    assert capsys.readouterr().err.startswith("download: error: only 0 videos downloaded")


def test_the_counts_fit_a_terminal_and_a_category_named_total_is_not_the_total(tmp_path: Path, capsys) -> None:
    """Every reason kind at once: one wide table wrapped in an 80-column terminal and ran its headers together."""
    rows = [
        ("i9E_Blai8vk", "a", "food"),
        ("i9E_Blai8vk", "b", "food"),
        ("r284c", "c", "food"),
        ("ftp://x/y", "d", "food"),
        ("HzRMV2keMcU", "e", ""),
        ("_64diyTtjwQ", "f", "total"),
    ]
    youtube_project(tmp_path, write_source(tmp_path / "videos.csv", rows))
    assert manifest.main(["--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()[:-1]) <= 80  # the last line is the summary with the path
    cells = [line.split("  ") for line in out.splitlines()]
    cells = [[cell.strip() for cell in line if cell.strip()] for line in cells]
    assert ["'total'", "0", "1"] in cells and ["total", "1", "5"] in cells
    for kind in ("duplicate", "malformed id", "unsupported url", "empty category", "unknown category"):
        assert [kind, "1"] in cells
