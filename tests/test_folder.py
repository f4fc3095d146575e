"""The folder source and a CSV's local paths: real videos rendered with ffmpeg, hostile names, files read in place."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from clipvideo.acquire.sample import render_sample_video
from clipvideo.core.paths import ProjectPaths
from stages import download, frames, manifest
from tests.conftest import SHRUNK, copy_project, run_command, stages_that_ran, write_params

HUES = {"food": (200, 40, 40), "travel": (40, 60, 200), "history": (60, 160, 60)}
UNICODE = "sub dir/pâtes à l'eau — été 1.mp4"
LONG = "a" * 200 + ".mp4"


def render(path: Path, category: str, index: int) -> Path:
    """A 1-second video whose colour says its category, and differs per index (distinct bytes)."""
    r, g, b = HUES[category]
    colour = f"0x{(r + 7 * index) % 256:02x}{(g + 5 * index) % 256:02x}{b:02x}"
    path.parent.mkdir(parents=True, exist_ok=True)
    render_sample_video(path, f"color=c={colour}:size=64x48:rate=5", 1, 5, False, index)
    return path


def labelled_folder(top: Path, per_category: int = 4) -> Path:
    """videos/<category>/... with per_category plain videos each, as a user would have them."""
    for category in HUES:
        for index in range(per_category):
            render(top / category / f"{category} clip {chr(97 + index)}.mp4", category, index)
    return top


def read_rows(table: Path) -> list[dict[str, str]]:
    with table.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    """A project and a labelled folder with every kind of trouble a real collection has."""
    root = tmp_path / "project"
    root.mkdir()
    videos = labelled_folder(tmp_path / "my videos")
    food, travel = videos / "food", videos / "travel"
    render(food / UNICODE, "food", 11)
    render(food / "Case.mp4", "food", 12)
    render(food / "case.mp4", "food", 13)  # differs only in case, and in bytes
    render(food / LONG, "food", 14)
    (travel / "notes.txt").write_text("not a video")
    truncated = (travel / "travel clip a.mp4").read_bytes()
    (travel / "truncated.mp4").write_bytes(truncated[: len(truncated) // 3])
    outside = render(tmp_path / "elsewhere" / "secret.mp4", "travel", 20)
    (travel / "link.mp4").symlink_to(outside)
    shutil.copyfile(food / "food clip a.mp4", videos / "history" / "copied from food.mp4")  # two labels
    (food / ".DS_Store").write_bytes(b"\0\1")
    write_params(
        root,
        {
            **SHRUNK,
            "dataset.source": "folder",
            "dataset.folder": str(videos),
            "dataset.categories": None,
            "download.min_videos": 2,
            "frames.min_videos": 2,
        },
    )
    return root, videos


def test_a_hostile_folder_is_listed_read_in_place_and_decoded(hostile, capsys):
    root, videos = hostile
    paths = ProjectPaths(root)
    assert manifest.main(["--root", str(root)]) == 0
    rows = {
        Path(row["url"]).relative_to(videos).as_posix() if row["status"] == "valid" else row["url"]: row
        for row in read_rows(paths.manifest)
    }
    valid = {name: row for name, row in rows.items() if row["status"] == "valid"}
    assert {f"food/{UNICODE}", "food/Case.mp4", "food/case.mp4", f"food/{LONG}", "travel/truncated.mp4"} <= set(valid)
    assert all(re.fullmatch(r"[0-9a-f]{16}", row["id"]) for row in valid.values())
    assert valid["food/Case.mp4"]["id"] != valid["food/case.mp4"]["id"]
    assert {row["category"] for row in valid.values()} == set(HUES)

    invalid = [row for row in rows.values() if row["status"] == "invalid"]
    reasons = {Path(row["url"]).name: row["reason"] for row in invalid}
    assert reasons["notes.txt"].startswith("not a video file name")
    assert reasons["link.mp4"].startswith("outside the folder: a symlink to")
    assert reasons["copied from food.mp4"].startswith("conflicting labels: food")
    assert reasons["food clip a.mp4"] == reasons["copied from food.mp4"]  # one conflict, on both of its rows
    assert ".DS_Store" not in reasons
    assert len(invalid) == 4

    assert download.main(["--root", str(root)]) == 0
    assert "read in place" in capsys.readouterr().out
    assert not [p for p in paths.videos_dir.iterdir() if not p.name.startswith(".")]  # nothing copied
    assert frames.main(["--root", str(root)]) == 0
    verdicts = {row["id"]: row for row in read_rows(paths.frames_table)}
    assert verdicts[valid["travel/truncated.mp4"]["id"]]["status"] == "error"
    assert verdicts[valid[f"food/{UNICODE}"]["id"]]["status"] == "ok"

    (videos / "food" / "Case.mp4").write_bytes((videos / "food" / "case.mp4").read_bytes())  # changed behind DVC
    assert frames.main(["--root", str(root)]) == 2
    assert "its bytes are not those of id" in capsys.readouterr().err


def test_outside_links_are_read_when_the_setting_allows(hostile):
    root, videos = hostile
    write_params(
        root,
        {
            **SHRUNK,
            "dataset.source": "folder",
            "dataset.folder": str(videos),
            "dataset.categories": None,
            "dataset.allow_outside_links": True,
        },
    )
    assert manifest.main(["--root", str(root)]) == 0
    link = next(row for row in read_rows(ProjectPaths(root).manifest) if row["url"].endswith("link.mp4"))
    assert link["status"] == "valid"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda v: [p.unlink() for p in (v / "history").iterdir()], r"history: no video file"),
        (lambda v: (v / "sport").mkdir(), r"sport: no video file"),
        (lambda v: shutil.rmtree(v / "travel"), r"dataset.categories has 'travel', but .* is not a folder"),
    ],
)
def test_an_empty_or_missing_category_is_one_line(tmp_path, capsys, change, message):
    videos = labelled_folder(tmp_path / "videos", per_category=1)
    change(videos)
    categories = None if "sport" in message else list(HUES)
    write_params(
        tmp_path,
        {**SHRUNK, "dataset.source": "folder", "dataset.folder": str(videos), "dataset.categories": categories},
    )
    assert manifest.main(["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err


def test_a_csv_names_local_videos_relative_to_itself(tmp_path):
    folder = tmp_path / "project" / "datasets" / "csv"
    render(folder / "clips" / "a b.mp4", "food", 1)
    render(tmp_path / "outside.mp4", "food", 2)
    lines = [
        "link,title,category",
        "clips/a b.mp4,A,food",
        "../../../outside.mp4,B,food",
        "clips/none.mp4,C,food",
        "dQw4w9WgXcQ,D,travel",
        "clips/a b.mp4,E,travel",
    ]
    (folder / "videos.csv").write_text("\n".join(lines) + "\n")
    root = tmp_path / "project"
    write_params(root, {**SHRUNK, "dataset.source": "csv", "dataset.csv": "datasets/csv/videos.csv"})
    assert manifest.main(["--root", str(root)]) == 0
    rows = read_rows(ProjectPaths(root).manifest)
    assert rows[0]["reason"].startswith("conflicting labels") and rows[4]["reason"].startswith("conflicting labels")
    assert rows[1]["reason"].startswith("outside the folder")
    assert rows[2]["reason"].startswith("file not found")
    assert (rows[3]["status"], rows[3]["id"]) == ("valid", "dQw4w9WgXcQ")


@pytest.mark.slow
def test_the_folder_source_runs_dvc_repro_and_one_new_video_costs_one(tmp_path, tiny_model_config):
    """dvc repro to the end on a folder; a video added to it reruns frames and embed for that video only."""
    videos = labelled_folder(tmp_path / "labelled videos", per_category=6)
    render(videos / "food" / UNICODE, "food", 11)
    (videos / "travel" / "notes.txt").write_text("not a video")
    root = tmp_path / "repo"
    root.mkdir()
    copy_project(root)
    write_params(
        root,
        {
            **SHRUNK,
            "embed.model": str(tiny_model_config),
            "dataset.source": "folder",
            "dataset.folder": str(videos),
            "dataset.categories": None,
            "split.test_size": 0.25,
            "split.val_size": 0.15,
        },
    )
    run_command(["git", "init", "-q"], root)
    run_command(["dvc", "init", "-q"], root)
    shutil.copytree(Path(__file__).resolve().parents[1] / ".dvc" / "plots", root / ".dvc" / "plots")
    first = run_command(["dvc", "repro"], root)
    assert "report" in stages_that_ran(first)
    assert "19 videos decoded, 0 reused" in first
    assert not os.listdir(root / "data" / "sample")

    render(videos / "history" / "new one.mp4", "history", 30)
    changed = json.loads(run_command(["dvc", "status", "--json"], root))
    assert {"manifest", "embed_text"} <= set(changed)  # the folder by content: with categories: null, text too
    again = run_command(["dvc", "repro", "embed"], root)  # the new video's way up to embed; training as above
    assert {"manifest", "download", "frames", "embed"} <= stages_that_ran(again)
    assert "1 video decoded, 19 reused from the cache" in again
    assert "1 video embedded, 19 reused from the cache" in again


def test_the_readme_example_folder_is_a_folder_source_with_new_videos_beside_it(tmp_path, capsys):
    """README.md, "Classify your own videos": `python -m tools.example_folder DEST` makes DEST/labelled, a folder
    the manifest reads as it stands (accents, spaces, a subfolder per category), and DEST/new for predict."""
    from tools import example_folder

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "python -m tools.example_folder /tmp/example " in readme and "dataset.folder=/tmp/example/labelled" in readme
    with pytest.raises(SystemExit):  # argparse's one line: the sample renders 2 videos per category or more
        example_folder.main([str(tmp_path / "example"), "--new", "1"])
    assert "argument --new: invalid choice: 1" in capsys.readouterr().err
    assert example_folder.main([str(tmp_path / "example"), "--per-category", "2", "--new", "2"]) == 0
    labelled, new = tmp_path / "example" / "labelled", tmp_path / "example" / "new"
    assert sorted(p.name for p in new.iterdir()) == [f"new video {n:02d}.mp4" for n in range(8)]
    assert not (tmp_path / "example" / ".render").exists()
    assert len(list(labelled.glob("*/été/*.mp4"))) == 4 and len(list(labelled.glob("*/*.mp4"))) == 4

    root = tmp_path / "project"
    root.mkdir()
    params = {"dataset.source": "folder", "dataset.folder": str(labelled), "dataset.categories": None}
    write_params(root, {**SHRUNK, **params})
    assert manifest.main(["--root", str(root)]) == 0
    rows = read_rows(ProjectPaths(root).manifest)
    assert [row["status"] for row in rows] == ["valid"] * 8
    assert sorted(row["category"] for row in rows) == sorted(example_folder.CATEGORIES * 2)
    assert "8 rows (8 valid)" in capsys.readouterr().out


def test_an_unreadable_file_or_folder_is_an_invalid_row_and_the_walk_goes_on(tmp_path, monkeypatch):
    """Permissions, faked (the tests run as root, who reads everything): a file the process may not read and a
    subfolder it may not list are each one `invalid` row naming why; every other video is listed."""
    videos = labelled_folder(tmp_path / "videos")
    locked_file = videos / "food" / "food clip a.mp4"
    locked_folder = videos / "travel" / "private"
    render(locked_folder / "hidden from us.mp4", "travel", 21)
    real_access, real_iterdir = os.access, Path.iterdir

    def iterdir(self: Path):
        if self == locked_folder:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(os, "access", lambda path, mode: path != locked_file and real_access(path, mode))
    monkeypatch.setattr(Path, "iterdir", iterdir)
    root = tmp_path / "project"
    root.mkdir()
    write_params(
        root, {**SHRUNK, "dataset.source": "folder", "dataset.folder": str(videos), "dataset.categories": None}
    )
    assert manifest.main(["--root", str(root)]) == 0
    rows = {Path(row["url"]): row for row in read_rows(ProjectPaths(root).manifest)}
    assert (rows[locked_file]["status"], rows[locked_file]["reason"]) == ("invalid", "not readable: permission denied")
    assert (rows[locked_folder]["status"], rows[locked_folder]["reason"]) == (
        "invalid",
        "not readable: Permission denied",
    )
    assert sum(row["status"] == "valid" for row in rows.values()) == 4 * len(HUES) - 1
