"""CSV inputs edited by hand into an inconsistent state: a clear one-line error naming the row, no work done."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from clipvideo.core.errors import PipelineError
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.tables import MAX_FIELD_CHARS, read_table, write_table
from stages import download, embed, frames
from tests.conftest import write_params


def rewrite(path: Path, edit) -> None:
    """Apply `edit` to the rows (a list of lists, header first) of a CSV, as a person with an editor would."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    edit(rows)
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)


def column(rows: list[list[str]], name: str) -> int:
    return rows[0].index(name)


def set_cell(path: Path, row: int, name: str, value: str) -> None:
    """Overwrite one field (row 0 is the header), as a person with an editor would."""

    def edit(rows: list[list[str]]) -> None:
        rows[row][column(rows, name)] = value

    rewrite(path, edit)


def drop_column(path: Path, name: str) -> None:
    def edit(rows: list[list[str]]) -> None:
        at = column(rows, name)
        for row in rows:
            del row[at]

    rewrite(path, edit)


def frames_error(project: ProjectPaths, shrunk_params, capsys) -> str:
    write_params(project.root, shrunk_params)
    assert frames.main(["--root", str(project.root)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("frames: error: ")
    assert not project.frames_table.exists() and not project.frames_dir.exists()
    return err.removeprefix("frames: error: ")


def test_videos_table_missing_a_column(project, shrunk_params, capsys):
    drop_column(project.videos_table, "path")
    assert frames_error(project, shrunk_params, capsys) == (
        f"{project.videos_table}: missing column(s) path; "
        "expected id, category, status, reason, path, bytes, duration_s"
    )


def test_videos_table_duplicate_id_names_the_line(project, shrunk_params, capsys):
    rewrite(project.videos_table, lambda rows: rows.insert(4, list(rows[1])))
    with project.videos_table.open() as handle:
        first_id = next(csv.DictReader(handle))["id"]
    assert frames_error(project, shrunk_params, capsys) == f"{project.videos_table}:5: duplicate id {first_id!r}"


def test_videos_table_path_that_does_not_exist_names_the_row(project, shrunk_params, capsys):
    set_cell(project.videos_table, 3, "path", "data/videos/gone.mp4")
    with project.videos_table.open() as handle:
        third_id = list(csv.DictReader(handle))[2]["id"]
    assert frames_error(project, shrunk_params, capsys) == (
        f"{project.videos_table}:4: id {third_id!r}: data/videos/gone.mp4 does not exist; rerun the download stage"
    )


@pytest.mark.parametrize("path", ["../params.yaml", "/etc/passwd", "data/videos", ""])
def test_videos_table_path_outside_the_videos_folder_is_refused(project, shrunk_params, capsys, path):
    set_cell(project.videos_table, 2, "path", path)
    message = frames_error(project, shrunk_params, capsys)
    assert message.startswith(f"{project.videos_table}:3: id ")
    assert message.endswith(f"path {path!r} is not a file inside data/videos/")


def test_videos_table_id_that_is_not_a_manifest_id_is_refused(project, shrunk_params, capsys):
    set_cell(project.videos_table, 1, "id", "../../evil")
    assert frames_error(project, shrunk_params, capsys) == (
        f"{project.videos_table}:2: id '../../evil': not a manifest id (11-character YouTube id or 16 hex digits)"
    )


def test_videos_table_row_with_a_missing_field(project, shrunk_params, capsys):
    rewrite(project.videos_table, lambda rows: rows[6].pop())
    assert frames_error(project, shrunk_params, capsys) == (
        f"{project.videos_table}:7: 6 field(s), expected 7 (id, category, status, reason, path, bytes, duration_s)"
    )


def test_videos_table_row_with_an_extra_field(project, shrunk_params, capsys):
    rewrite(project.videos_table, lambda rows: rows[2].append("surplus"))
    assert frames_error(project, shrunk_params, capsys).startswith(f"{project.videos_table}:3: 8 field(s), expected 7")


def test_videos_table_unknown_status(project, shrunk_params, capsys):
    set_cell(project.videos_table, 2, "status", "OK")
    assert frames_error(project, shrunk_params, capsys) == (
        f"{project.videos_table}:3: status='OK', expected one of ok, unavailable, failed, invalid"
    )


def test_empty_id_names_the_line(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("id,name\na,1\n,2\n")
    with pytest.raises(PipelineError, match=rf"^{tmp_path}/t.csv:3: empty id$"):
        read_table(table, ("id", "name"))


def test_line_numbers_count_quoted_line_breaks(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text('id,name\na,"two\nlines"\na,3\n')
    with pytest.raises(PipelineError, match=r":4: duplicate id 'a'$"):
        read_table(table, ("id", "name"))


def test_a_row_spanning_lines_is_named_by_its_first_line(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text('id,name\na,1\n\nb,"three\nline\nname"\nc,4\na,"two\nlines"\n')
    with pytest.raises(PipelineError, match=r":8: duplicate id 'a'$"):
        read_table(table, ("id", "name"))
    table.write_text('id,name\na,1\n\nb,"three\nline\nname"\nc,4\n')
    rows = read_table(table, ("id", "name"))
    assert [(row.line, dict(row)) for row in rows] == [
        (2, {"id": "a", "name": "1"}),
        (4, {"id": "b", "name": "three\nline\nname"}),
        (7, {"id": "c", "name": "4"}),
    ]


def test_videos_table_error_line_counts_a_multi_line_reason_above_it(project, shrunk_params, capsys):
    def explain_and_break(rows):
        rows[1][column(rows, "reason")] = "first line\nsecond line"
        rows[3][column(rows, "path")] = "data/videos/gone.mp4"

    rewrite(project.videos_table, explain_and_break)
    with project.videos_table.open(newline="") as handle:
        third_id = list(csv.DictReader(handle))[2]["id"]
    assert frames_error(project, shrunk_params, capsys) == (
        f"{project.videos_table}:5: id {third_id!r}: data/videos/gone.mp4 does not exist; rerun the download stage"
    )


def test_manifest_duplicate_id_stops_download_naming_the_line(project, shrunk_params, capsys):
    rewrite(project.manifest, lambda rows: rows.append(list(rows[2])))
    write_params(project.root, shrunk_params)
    assert download.main(["--root", str(project.root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"download: error: {project.manifest}:14: duplicate id ") and "\n" not in err


def test_manifest_missing_column_stops_download(project, shrunk_params, capsys):
    drop_column(project.manifest, "url")
    write_params(project.root, shrunk_params)
    assert download.main(["--root", str(project.root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"download: error: {project.manifest}: missing column(s) url;")


def test_frames_table_row_without_its_frames_file_stops_embed(project, shrunk_params, capsys):
    write_params(project.root, shrunk_params)
    assert frames.main(["--root", str(project.root)]) == 0
    with project.frames_table.open() as handle:
        second = list(csv.DictReader(handle))[1]["id"]
    (project.frames_dir / f"{second}.npz").unlink()
    capsys.readouterr()
    assert embed.main(["--root", str(project.root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"embed: error: {project.frames_table}: row {second!r}: no frames file") and "\n" not in err
    assert not project.embeddings_dir.exists()


def test_every_csv_the_project_writes_it_can_read_back(tmp_path):
    """A field of the largest size read_table reads round-trips; one character more is refused at the write,
    naming the row and column, and the earlier file stays whole."""
    path = tmp_path / "table.csv"
    write_table(path, ("id", "text"), [{"id": "a", "text": "short"}])
    longest = 'x"\n' * (MAX_FIELD_CHARS // 3) + "x" * (MAX_FIELD_CHARS % 3)  # quotes and line breaks included
    write_table(path, ("id", "text"), [{"id": "a", "text": "short"}, {"id": "b", "text": longest}])
    assert [row["text"] for row in read_table(path, ("id", "text"))] == ["short", longest]
    with pytest.raises(PipelineError) as error:
        write_table(path, ("id", "text"), [{"id": "a", "text": "short"}, {"id": "b", "text": longest + "x"}])
    expected = f"{path}: row 2, column text: 16,777,217 characters, more than the 16,777,216 a field may hold"
    assert str(error.value) == expected
    assert len(read_table(path, ("id", "text"))[1]["text"]) == MAX_FIELD_CHARS
