"""Atomic writes: a stage never leaves a half-written file or folder under its final name."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clipvideo.core.errors import DiskFullError

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


def temporary_sibling(final: Path, shared: bool = False) -> Path:
    """Where `final` is written before the rename: hidden, in the same folder (the rename stays atomic).
    `shared`: other processes may write `final` at the same time, so the name is unique to this writer."""
    unique = f".{secrets.token_hex(4)}" if shared else ""
    return final.with_name(f".{final.name}.{os.getpid()}{unique}{TMP_SUFFIX}")


@contextlib.contextmanager
def atomic_path(final: Path, shared: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `final` only if the block succeeds.

    The block writes a file or makes a folder there; an existing folder under `final` is replaced whole.
    Temporaries of `final` that a killed earlier writer left behind are removed first, so a rerun that
    completes leaves none (not when `shared`: in a folder that several processes write, such as the per-video
    cache, a temporary may be another writer's, and the cache removes old ones itself). The temporary is fsynced
    before the rename and the folder after it, so a power loss leaves the old content or the new one, never an
    empty file under the final name.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    if not shared:
        for stale in final.parent.glob(f".{glob.escape(final.name)}.*{TMP_SUFFIX}"):
            remove_path(stale)
    tmp = temporary_sibling(final, shared)
    try:
        yield tmp
        fsync_tree(tmp)
        if tmp.is_dir() and final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)  # a folder cannot be renamed onto a non-empty one
        os.replace(tmp, final)
        fsync_path(final.parent)
    except OSError as exc:
        # name the output being written (a copy's error names its source first; a write often names nothing)
        full = DiskFullError.of(exc, tmp)
        if full is None:
            raise
        raise DiskFullError(str(full.path).replace(str(tmp), str(final), 1)) from exc
    finally:
        remove_path(tmp)


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """A new empty folder to fill; it replaces `final` whole when the block succeeds, else it is removed."""
    with atomic_path(final) as tmp:
        tmp.mkdir()
        yield tmp


def write_bytes_atomic(path: Path, data: bytes, shared: bool = False) -> None:
    with atomic_path(path, shared) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, value: Any) -> None:
    """Indented JSON with a final newline (diffs well in git, which keeps metrics and reports)."""
    write_text_atomic(path, json.dumps(value, indent=2) + "\n")


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
