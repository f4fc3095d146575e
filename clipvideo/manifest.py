"""The manifest: every source row once, `valid` or `invalid` with a reason.

Ids become file names later, so they are derived here and only from checked values: an
11-character YouTube id as is, anything else as a hash of its url.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]{11}")


def url_id(url: str) -> str:
    """A file-name-safe id for a url that is not a YouTube id."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def is_safe_id(video_id: str) -> bool:
    """True for the two id shapes the manifest produces; anything else never becomes a path."""
    return bool(YOUTUBE_ID.fullmatch(video_id) or re.fullmatch(r"[0-9a-f]{16}", video_id))


def sample_rows(videos: Iterable[tuple[str, Path, str]], root: Path) -> list[dict[str, str]]:
    """Manifest rows for locally rendered videos; the url is the path relative to the project."""
    rows = []
    for category, path, title in videos:
        url = path.relative_to(root).as_posix() if path.is_absolute() else path.as_posix()
        rows.append(
            {"id": url_id(url), "url": url, "category": category, "title": title, "status": "valid", "reason": ""}
        )
    return rows


def count_by(rows: Iterable[dict[str, str]], *keys: str) -> Counter:
    return Counter(tuple(row[k] for k in keys) for row in rows)
