"""Video ids: the only values from a CSV that become file names, and only in these two shapes."""

from __future__ import annotations

import hashlib
import re

YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]{11}")
URL_ID = re.compile(r"[0-9a-f]{16}")


def url_id(url: str) -> str:
    """A file-name-safe id for a url (or a local path) that is not a YouTube id."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def is_safe_id(video_id: str) -> bool:
    """True for the two id shapes the manifest produces; anything else never becomes a path."""
    return bool(YOUTUBE_ID.fullmatch(video_id) or URL_ID.fullmatch(video_id))
