"""Atomic writes and CSV tables: a stage never leaves a half-written file under its final name."""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from clipvideo.errors import PipelineError

TMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `final` only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


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


def read_table(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Read a CSV written by an earlier stage, naming the file and column when it is not usable."""
    if not path.is_file():
        raise PipelineError(f"{path}: missing; run the stage that writes it first (dvc repro)")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise PipelineError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(required)}")
        rows = list(reader)
    seen: set[str] = set()
    if "id" in required:
        for line, row in enumerate(rows, start=2):
            if row["id"] in seen:
                raise PipelineError(f"{path}:{line}: duplicate id {row['id']!r}")
            seen.add(row["id"])
    return rows


def remove_stale_temporaries(directory: Path) -> int:
    """Delete temporaries a killed run left behind, so a rerun starts clean."""
    if not directory.is_dir():
        return 0
    stale = [p for p in directory.iterdir() if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX)]
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(stale)
