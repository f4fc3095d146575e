"""Links from a dataset CSV: a bare or url-wrapped YouTube id, or another http(s) url, judged by its text alone.

Ids become file names later, so they are derived here and only from checked values: an 11-character
YouTube id as is, any other http(s) url as a hash of it (core.ids). Nothing here touches the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qs, urlsplit

from clipvideo.core.ids import YOUTUBE_ID, url_id
from clipvideo.core.text import quoted

YOUTUBE_HOSTS = ("youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com", "youtube-nocookie.com")
SHORT_HOSTS = ("youtu.be", "www.youtu.be")
MAX_LINK_CHARS = 2048

# Reason kinds: the text before the first ':' of a reason, counted by the manifest stage.
MALFORMED_ID = "malformed id"
UNSUPPORTED_URL = "unsupported url"
EMPTY_CATEGORY = "empty category"
UNKNOWN_CATEGORY = "unknown category"
DUPLICATE = "duplicate"
CONFLICTING_LABELS = "conflicting labels"
# A CSV's local paths (csv source) and a folder's files (folder source).
OUTSIDE_PATH = "outside the folder"
NOT_A_VIDEO = "not a video file name"
MISSING_FILE = "file not found"


class LinkError(ValueError):
    """A link that cannot be fetched safely; `kind` is one of the reason kinds above."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@dataclass(frozen=True)
class Link:
    id: str
    url: str


def watch_url(video_id: str) -> str:
    return f"https://www.youtube.com/watch?v={video_id}"


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
        raise LinkError(MALFORMED_ID, f"{quoted(link)} is not an 11-character YouTube id or an http(s) url")
    parts = urlsplit(link)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise LinkError(UNSUPPORTED_URL, f"{quoted(link)}; only http(s) urls are fetched")
    if any(c.isspace() or not c.isprintable() for c in link):
        raise LinkError(UNSUPPORTED_URL, f"{quoted(link)} contains spaces or control characters")
    video_id = youtube_id_in(parts)
    if video_id is None:
        return Link(url_id(link), link)
    if not YOUTUBE_ID.fullmatch(video_id):
        raise LinkError(
            MALFORMED_ID, f"YouTube url with id {quoted(video_id)}, expected 11 characters of [A-Za-z0-9_-]"
        )
    return Link(video_id, watch_url(video_id))


def reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0]
