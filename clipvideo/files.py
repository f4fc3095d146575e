"""Atomic writes and CSV tables: a stage never leaves a half-written file under its final name."""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import json
import os
import shutil
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from clipvideo.errors import DiskFullError, PipelineError

TMP_SUFFIX = ".tmp"


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def fsync_path(path: Path) -> None:
    """Wait until `path`'s content (a file) or its entries (a folder) are on disk, not just in the page cache."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_tree(path: Path) -> None:
    """fsync a file, or a folder's own files and then the folder: what a rename is about to publish."""
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            if child.is_file() and not child.is_symlink():
                fsync_path(child)
    fsync_path(path)


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `final` only if the block succeeds.

    Temporaries of `final` that a killed earlier writer left behind are removed first, so a rerun
    that completes leaves none, whatever the stage. The temporary is fsynced before the rename and
    the folder after it, so a power loss leaves the old content or the new one, never an empty file
    under the final name.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{glob.escape(final.name)}.*{TMP_SUFFIX}"):
        remove_path(stale)
    tmp = final.with_name(f".{final.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        yield tmp
        fsync_tree(tmp)
        os.replace(tmp, final)
        fsync_path(final.parent)
    except OSError as exc:
        if exc.errno not in DiskFullError.DISK_FULL_ERRNOS:
            raise
        # name the output being written (a copy's error names its source first; a write often names nothing)
        written = str(exc.filename2 or exc.filename or tmp)
        raise DiskFullError(written.replace(str(tmp), str(final), 1)) from exc
    finally:
        remove_path(tmp)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_table(path: Path, columns: Sequence[str], rows: Iterable[dict]) -> int:
    """Write rows as a UTF-8 CSV with a header; unknown keys are an error, missing ones empty."""
    count = 0
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="raise")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


class TableRow(dict[str, str]):
    """One CSV row, column -> value, plus `line`: the file line it starts on, for error messages.

    `line` is an attribute, not a column, so writing the row back out never adds it.
    """

    __slots__ = ("line",)

    def __init__(self, values: Iterable[tuple[str, str]], line: int) -> None:
        super().__init__(values)
        self.line = line


def read_table(
    path: Path, required: Sequence[str], choices: Mapping[str, Collection[str]] | None = None
) -> list[TableRow]:
    """Read a CSV written by an earlier stage (or edited by hand), naming the file, line and column
    of the first thing that is not usable: missing columns, a row with too few or too many fields,
    an empty or duplicate id, a value outside `choices`. Line numbers count the line breaks inside
    quoted fields, so each row's `line` is where an editor shows it."""
    if not path.is_file():
        raise PipelineError(f"{path}: missing; run the stage that writes it first (dvc repro)")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        missing = [c for c in required if c not in header]
        if missing:
            raise PipelineError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(required)}")
        rows = []
        seen: set[str] = set()
        previous_end = reader.line_num
        for fields in reader:
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


def link_or_copy(source: Path, final: Path) -> None:
    """Put `source`'s content under `final` atomically: a hard link when the file system allows."""
    with atomic_path(final) as tmp:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def remove_stale_temporaries(directory: Path) -> int:
    """Delete temporaries a killed run left behind, so a rerun starts clean."""
    if not directory.is_dir():
        return 0
    stale = [p for p in directory.iterdir() if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX)]
    for path in stale:
        remove_path(path)
    return len(stale)


def resume_key(parts: dict, code_files: Sequence[Path]) -> str:
    """Names a resume folder: a hash of every setting that changes the output and of the code that computes it,
    so a changed setting or an edited stage never reuses old work."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode())
    for code in code_files:
        digest.update(code.read_bytes())
    return digest.hexdigest()[:16]


def prepare_resume_dir(root: Path, key: str) -> Path:
    """`root/key`, created; other keys' folders and the temporaries a killed run left inside it are removed."""
    root.mkdir(parents=True, exist_ok=True)
    for other in root.iterdir():
        if other.name != key:
            remove_path(other)
    resume_dir = root / key
    resume_dir.mkdir(exist_ok=True)
    remove_stale_temporaries(resume_dir)
    return resume_dir
