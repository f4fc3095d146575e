"""CSV tables: UTF-8 with a header row, written atomically, read back with errors that name file and line."""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from clipvideo.core.errors import PipelineError
from clipvideo.core.files import atomic_path

# The csv module refuses fields over 128 KiB by default; the Kaggle CSV's descriptions can be longer. Every
# CSV the project reads (its own and the source) is read with this limit, and no CSV it writes holds a longer
# field, so whatever it writes it can read back.
MAX_FIELD_CHARS = 16 * 1024 * 1024


@contextlib.contextmanager
def field_limit() -> Iterator[None]:
    """The csv module's field size limit (process-wide) raised to MAX_FIELD_CHARS for the block, then restored."""
    previous = csv.field_size_limit(MAX_FIELD_CHARS)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def write_table(path: Path, columns: Sequence[str], rows: Iterable[dict]) -> int:
    """Write rows as a UTF-8 CSV with a header; unknown keys are an error, missing ones empty, and a field
    read_table could not read back (over MAX_FIELD_CHARS) stops the write, naming the row and column."""
    count = 0
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="raise")
        writer.writeheader()
        for row in rows:
            count += 1
            for column, value in row.items():
                if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
                    raise PipelineError(
                        f"{path}: row {count}, column {column}: {len(value):,} characters, more than the "
                        f"{MAX_FIELD_CHARS:,} a field may hold"
                    )
            writer.writerow(row)
    return count


class TableRow(dict[str, str]):
    """One CSV row, column -> value, plus `line`: the file line it starts on, for error messages.

    `line` is an attribute, not a column, so writing the row back out never adds it.
    """

    __slots__ = ("line",)

    def __init__(self, values: Iterable[tuple[str, str]], line: int) -> None:
        super().__init__(values)
        self.line = line


def csv_rows(reader: Iterator[list[str]], path: Path) -> Iterator[list[str]]:
    """The reader's rows; a malformed one (a NUL byte, a field over the limit) is an error naming file and line."""
    try:
        yield from reader
    except csv.Error as exc:
        line = getattr(reader, "line_num", 0) + 1
        raise PipelineError(f"{path}:{line}: not a readable CSV ({exc})") from None


def read_table(
    path: Path, required: Sequence[str], choices: Mapping[str, Collection[str]] | None = None
) -> list[TableRow]:
    """Read a CSV written by an earlier stage (or edited by hand), naming the file, line and column
    of the first thing that is not usable: missing columns, a row with too few or too many fields,
    an empty or duplicate id, a value outside `choices`. Line numbers count the line breaks inside
    quoted fields, so each row's `line` is where an editor shows it."""
    if not path.is_file():
        raise PipelineError(f"{path}: missing; run the stage that writes it first (dvc repro)")
    with field_limit(), path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        missing = [c for c in required if c not in header]
        if missing:
            raise PipelineError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(required)}")
        rows = []
        seen: set[str] = set()
        previous_end = reader.line_num
        for fields in csv_rows(reader, path):
            line, previous_end = previous_end + 1, reader.line_num  # a quoted field may span lines
            if not fields:
                continue  # a blank line holds no row
            if len(fields) != len(header):
                raise PipelineError(
                    f"{path}:{line}: {len(fields)} field(s), expected {len(header)} ({', '.join(header)})"
                )
            row = TableRow(zip(header, fields, strict=True), line)
            if "id" in required:
                if not row["id"]:
                    raise PipelineError(f"{path}:{line}: empty id")
                if row["id"] in seen:
                    raise PipelineError(f"{path}:{line}: duplicate id {row['id']!r}")
                seen.add(row["id"])
            for column, allowed in (choices or {}).items():
                if row[column] not in allowed:
                    raise PipelineError(
                        f"{path}:{line}: {column}={row[column]!r}, expected one of {', '.join(allowed)}"
                    )
            rows.append(row)
    return rows
