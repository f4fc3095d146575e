"""The manifest: every source row once, `valid` or `invalid` with a reason.

Ids become file names later, so they are derived here and only from checked values: an
11-character YouTube id as is, any other http(s) url as a hash of it. Nothing here touches the
network: a row is judged by its text alone.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, parse_qs, urlsplit

from clipvideo.errors import PipelineError

YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]{11}")
YOUTUBE_HOSTS = ("youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com", "youtube-nocookie.com")
SHORT_HOSTS = ("youtu.be", "www.youtu.be")
MAX_LINK_CHARS = 2048
# The csv module refuses fields over 128 KiB by default; descriptions are unused but can be long.
MAX_FIELD_CHARS = 16 * 1024 * 1024
CSV_COLUMNS = ("link", "title", "category")

# Reason kinds: the text before the first ':' of a reason, counted by the manifest stage.
MALFORMED_ID = "malformed id"
UNSUPPORTED_URL = "unsupported url"
EMPTY_CATEGORY = "empty category"
UNKNOWN_CATEGORY = "unknown category"
DUPLICATE = "duplicate"


class LinkError(ValueError):
    """A link that cannot be fetched safely; `kind` is one of the reason kinds above."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@dataclass(frozen=True)
class Link:
    id: str
    url: str


def url_id(url: str) -> str:
    """A file-name-safe id for a url that is not a YouTube id."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def is_safe_id(video_id: str) -> bool:
    """True for the two id shapes the manifest produces; anything else never becomes a path."""
    return bool(YOUTUBE_ID.fullmatch(video_id) or re.fullmatch(r"[0-9a-f]{16}", video_id))


def watch_url(video_id: str) -> str:
    return f"https://www.youtube.com/watch?v={video_id}"


def shown(value: str, limit: int = 40) -> str:
    """A value quoted and cut short for a one-line reason."""
    return repr(value[:limit] + ("..." if len(value) > limit else ""))


def youtube_id_in(parts: SplitResult) -> str | None:
    """The video id a YouTube url names (watch?v=, youtu.be/, /shorts/, /embed/, /live/), or None."""
    host = (parts.hostname or "").lower()
    if host in SHORT_HOSTS:
        return parts.path.strip("/")
    if host in YOUTUBE_HOSTS:
        if parts.path == "/watch":
            return (parse_qs(parts.query).get("v") or [""])[0]
        segments = parts.path.strip("/").split("/")
        if len(segments) == 2 and segments[0] in ("shorts", "embed", "live", "v"):
            return segments[1]
        return ""
    return None


def parse_link(link: str) -> Link:
    """A CSV link -> (id, url to fetch), or LinkError: a bare or url-wrapped YouTube id, or another http(s) url."""
    link = link.strip()
    if len(link) > MAX_LINK_CHARS:
        raise LinkError(MALFORMED_ID, f"{len(link)} characters, more than {MAX_LINK_CHARS}")
    if YOUTUBE_ID.fullmatch(link):
        return Link(link, watch_url(link))
    if "://" not in link:
        raise LinkError(MALFORMED_ID, f"{shown(link)} is not an 11-character YouTube id or an http(s) url")
    parts = urlsplit(link)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise LinkError(UNSUPPORTED_URL, f"{shown(link)}; only http(s) urls are fetched")
    if any(c.isspace() or not c.isprintable() for c in link):
        raise LinkError(UNSUPPORTED_URL, f"{shown(link)} contains spaces or control characters")
    video_id = youtube_id_in(parts)
    if video_id is None:
        return Link(url_id(link), link)
    if not YOUTUBE_ID.fullmatch(video_id):
        raise LinkError(MALFORMED_ID, f"YouTube url with id {shown(video_id)}, expected 11 characters of [A-Za-z0-9_-]")
    return Link(video_id, watch_url(video_id))


def reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0]


def printable(text: str) -> str:
    """`text` without control characters (NUL, escape sequences): CSV values reach the console and other files."""
    return "".join(c for c in text if c.isprintable())


def read_source_csv(path: Path) -> list[dict[str, str]]:
    """The Kaggle CSV (link,title,description,category; quoted multi-line fields) as dicts."""
    limit = csv.field_size_limit(MAX_FIELD_CHARS)
    reader = None
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise PipelineError(
                    f"{path}: missing column(s) {', '.join(missing)}; expected a CSV with columns "
                    "link,title,description,category (the Kaggle youtube-videos-dataset)"
                )
            return list(reader)
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x})") from None
    except csv.Error as exc:
        line = f":{reader.line_num + 1}" if reader is not None else ""  # line_num counts the lines done before it
        raise PipelineError(f"{path}{line}: not a readable CSV ({exc})") from None
    finally:
        csv.field_size_limit(limit)


def youtube_rows(source: Iterable[dict[str, str]], categories: list[str]) -> list[dict[str, str]]:
    """Manifest rows for the CSV rows, in order: valid, or invalid with the first reason that applies.

    An invalid row gets the id `row-<n>` (n counts data rows from 1): ids stay unique, and such an id
    can never pass `is_safe_id`, so it never becomes a path.
    """
    known = set(categories)
    first_row: dict[str, tuple[int, str]] = {}
    rows = []
    for number, record in enumerate(source, start=1):
        link = record.get("link") or ""
        category = printable(record.get("category") or "").strip()
        title = " ".join(printable(record.get("title") or "").split())
        try:
            parsed = parse_link(link)
            if not category:
                raise LinkError(EMPTY_CATEGORY, "expected one of " + ", ".join(categories))
            if category not in known:
                raise LinkError(UNKNOWN_CATEGORY, f"{shown(category)}, expected one of {', '.join(categories)}")
            if parsed.id in first_row:
                other, other_category = first_row[parsed.id]
                raise LinkError(DUPLICATE, f"same video as row {other} (labelled {other_category})")
        except LinkError as exc:
            rows.append(
                {
                    "id": f"row-{number}",
                    "url": link.strip()[:200],
                    "category": category[:40],
                    "title": title,
                    "status": "invalid",
                    "reason": str(exc),
                }
            )
            continue
        first_row[parsed.id] = (number, category)
        rows.append(
            {"id": parsed.id, "url": parsed.url, "category": category, "title": title, "status": "valid", "reason": ""}
        )
    return rows


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
