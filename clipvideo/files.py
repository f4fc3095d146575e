"""Atomic writes and CSV tables: a stage never leaves a half-written file under its final name."""

from __future__ import annotations

import contextlib
import csv
import glob
import os
import shutil
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from clipvideo.errors import PipelineError

TMP_SUFFIX = ".tmp"


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `final` only if the block succeeds.

    Temporaries of `final` that a killed earlier writer left behind are removed first, so a rerun
    that completes leaves none, whatever the stage.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{glob.escape(final.name)}.*{TMP_SUFFIX}"):
        remove_path(stale)
    tmp = final.with_name(f".{final.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        yield tmp
        os.replace(tmp, final)
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


def read_table(
    path: Path, required: Sequence[str], choices: Mapping[str, Collection[str]] | None = None
) -> list[dict[str, str]]:
    """Read a CSV written by an earlier stage (or edited by hand), naming the file, line and column
    of the first thing that is not usable: missing columns, a row with too few or too many fields,
    an empty or duplicate id, a value outside `choices`."""
    if not path.is_file():
        raise PipelineError(f"{path}: missing; run the stage that writes it first (dvc repro)")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise PipelineError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(required)}")
        rows = []
        seen: set[str] = set()
        for row in reader:
            line = reader.line_num
            if None in row or None in row.values():
                found = len(row) - 1 + len(row[None]) if None in row else sum(v is not None for v in row.values())
                raise PipelineError(f"{path}:{line}: {found} field(s), expected {len(header)} ({', '.join(header)})")
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
