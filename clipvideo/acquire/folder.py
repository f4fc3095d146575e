"""The folder source: `<dataset.folder>/<category>/<any subfolders>/<video file>`, read in place.

A video's id is a digest of its bytes (16 hex digits, the url-id shape): safe for any file name (spaces, unicode,
very long, differing only in case), stable when a file is renamed or moved within its category, and new when
its content changes, so data/manifest.csv changes and DVC reruns what follows. The same bytes under two
categories is one video with two labels: every row of it is `invalid` (conflicting labels), as for a CSV.

A symlink (file or folder) whose target lies outside the folder is refused unless
`dataset.allow_outside_links` is true: a folder handed over by someone else must not make the pipeline read
`~/.ssh` or `/dev/zero`. Hidden entries (`.DS_Store`, `.git`) are skipped without a row.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from clipvideo.acquire.fetch import VIDEO_SUFFIXES
from clipvideo.acquire.links import CONFLICTING_LABELS, DUPLICATE, NOT_A_VIDEO, OUTSIDE_PATH
from clipvideo.acquire.series import series_key
from clipvideo.config.schema import DatasetParams
from clipvideo.core.cache import sha256_files
from clipvideo.core.contracts import MAX_TEXT_CHARS, Status
from clipvideo.core.errors import PipelineError
from clipvideo.core.text import clipped, escaped, printable, quoted

NOT_A_FILE = "not a regular file"
NOT_READABLE = "not readable"


def folder_root(dataset: DatasetParams, root: Path) -> Path:
    """dataset.folder (relative to the project, or absolute), checked to be a folder."""
    folder = root / dataset.folder
    if not folder.is_dir():
        raise PipelineError(
            f"params.yaml: dataset.folder={dataset.folder!r}: not a folder (expected one subfolder "
            "per category, each holding video files)"
        )
    return folder


def source_categories(dataset: DatasetParams, root: Path) -> list[str]:
    """dataset.categories, or when it is null (folder source only) the folder's subfolders, sorted."""
    if dataset.categories is not None:
        return list(dataset.categories)
    if dataset.source != "folder":
        raise PipelineError(
            f"params.yaml: dataset.categories is null; expected a list of categories (only the "
            f"folder source takes them from its subfolders, and dataset.source is {dataset.source})"
        )
    folder = folder_root(dataset, root)
    names = sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if len(names) < 2:
        raise PipelineError(
            f"dataset.folder={dataset.folder!r}: {len(names)} category subfolder(s), expected at "
            "least 2 (one per category)"
        )
    return names


def inside(path: Path, top: Path) -> bool:
    return path.resolve().is_relative_to(top)


def walk(folder: Path, top: Path, allow_outside: bool) -> Iterator[tuple[Path, str]]:
    """Every non-hidden file under `folder`, in a stable order, with "" or why it is refused (an unreadable
    folder too); symlinked folders are followed once (a loop is not walked twice) when their target may be read."""
    seen: set[Path] = set()
    stack = [folder]
    while stack:
        current = stack.pop()
        if current.resolve() in seen:
            continue
        seen.add(current.resolve())
        try:
            entries = sorted(current.iterdir(), key=lambda p: p.name)
        except OSError as exc:  # permissions: the folder is a row, the walk goes on
            yield current, f"{NOT_READABLE}: {exc.strerror}"
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_symlink() and not allow_outside and not inside(entry, top):
                target = quoted(str(entry.resolve()), 60)
                yield entry, f"{OUTSIDE_PATH}: a symlink to {target} (dataset.allow_outside_links is false)"
            elif entry.is_dir():
                stack.append(entry)
            elif not entry.is_file():
                yield entry, f"{NOT_A_FILE} (a device, socket, pipe or broken link)"
            elif entry.suffix.lower() not in VIDEO_SUFFIXES:
                yield entry, f"{NOT_A_VIDEO} (expected {', '.join(VIDEO_SUFFIXES)})"
            elif not os.access(entry, os.R_OK):
                yield entry, f"{NOT_READABLE}: permission denied"
            else:
                yield entry, ""


def folder_rows(dataset: DatasetParams, root: Path, categories: list[str]) -> list[dict[str, str]]:
    """Manifest rows for every file under the category folders: valid (id: its content digest; url: its path
    as the project reaches it), or invalid with the first reason that applies."""
    folder = folder_root(dataset, root)
    top = folder.resolve()
    found: list[tuple[str, Path, str]] = []
    for category in categories:
        category_dir = folder / category
        if not category_dir.is_dir():
            raise PipelineError(f"dataset.categories has {category!r}, but {category_dir} is not a folder")
        if category_dir.is_symlink() and not dataset.allow_outside_links and not inside(category_dir, top):
            raise PipelineError(f"{category_dir}: a symlink {OUTSIDE_PATH} (set dataset.allow_outside_links: true)")
        files = list(walk(category_dir, top, dataset.allow_outside_links))
        if not any(reason == "" for _, reason in files):
            raise PipelineError(f"{category_dir}: no video file (expected files ending in {', '.join(VIDEO_SUFFIXES)})")
        found += [(category, path, reason) for path, reason in files]
    videos = [path for _, path, reason in found if not reason]
    digests = dict(zip(videos, sha256_files(videos, "manifest: hashing videos", unit="video"), strict=True))
    labels: dict[str, dict[str, Path]] = {}
    for category, path, reason in found:
        if not reason:
            labels.setdefault(digests[path][:16], {}).setdefault(category, path)
    first: dict[str, Path] = {}
    rows = []
    for number, (category, path, reason) in enumerate(found, start=1):
        url = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()
        named = path.relative_to(folder).as_posix()
        video_id = digests[path][:16] if not reason else ""
        if video_id and len(labels[video_id]) > 1:
            reason = f"{CONFLICTING_LABELS}: " + ", ".join(
                f"{c} ({quoted(p.relative_to(folder).as_posix(), 60)})" for c, p in labels[video_id].items()
            )
        elif video_id in first:
            reason = f"{DUPLICATE}: same bytes as {quoted(first[video_id].relative_to(folder).as_posix(), 60)}"
        elif not url.isprintable():
            reason = "file name with control characters (line breaks, escapes): rename it"
        row = {
            "url": url,
            "category": category,
            "title": clipped(printable(Path(named).stem), MAX_TEXT_CHARS),
            "series": series_key(path.stem, ""),
        }
        if reason:
            rows.append(
                {
                    **row,
                    "id": f"row-{number}",
                    "url": clipped(escaped(url), MAX_TEXT_CHARS),
                    "status": Status.INVALID,
                    "reason": reason,
                }
            )
        else:
            first[video_id] = path
            rows.append({**row, "id": video_id, "status": Status.VALID, "reason": ""})
    return rows
