"""Getting a manifest row's video onto disk: local files are copied, urls go through yt-dlp."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipvideo.files import atomic_path
from clipvideo.manifest import YOUTUBE_ID

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")


class FetchError(Exception):
    """A video that could not be fetched; `status` is `unavailable` (permanent) or `failed` (retry)."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Fetched:
    path: Path
    bytes: int


def is_remote(url: str) -> bool:
    return url.startswith(("http://", "https://")) or bool(YOUTUBE_ID.fullmatch(url))


def local_source(url: str, root: Path, allowed_dir: Path) -> Path:
    """The local file a manifest url names, only if it lies inside `allowed_dir`."""
    source = (root / url).resolve()
    if not source.is_relative_to(allowed_dir.resolve()):
        raise FetchError("invalid", f"local path outside {allowed_dir.name}/: {url!r}")
    if source.suffix.lower() not in VIDEO_SUFFIXES:
        raise FetchError("invalid", f"not a video file name (expected {', '.join(VIDEO_SUFFIXES)}): {url!r}")
    if not source.is_file():
        raise FetchError("unavailable", f"file not found: {url}")
    return source


def copy_local(source: Path, dest_dir: Path, video_id: str) -> Fetched:
    dest = dest_dir / f"{video_id}{source.suffix.lower()}"
    with atomic_path(dest) as tmp:
        shutil.copyfile(source, tmp)
    return Fetched(dest, dest.stat().st_size)


def ytdlp_options(dest_dir: Path, video_id: str, max_height: int) -> dict[str, Any]:
    return {
        "outtmpl": {"default": str(dest_dir / f"{video_id}.%(ext)s")},
        "format": f"best[height<={max_height}][ext=mp4]/best[height<={max_height}]/best",
        "noplaylist": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "continuedl": True,
    }


def fetch_with_ytdlp(url: str, dest_dir: Path, video_id: str, max_height: int) -> Fetched:
    import yt_dlp

    target = url if url.startswith(("http://", "https://")) else f"https://www.youtube.com/watch?v={url}"
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        with yt_dlp.YoutubeDL(ytdlp_options(dest_dir, video_id, max_height)) as ydl:
            info = ydl.extract_info(target, download=True)
            path = Path(ydl.prepare_filename(info))
    except yt_dlp.utils.DownloadError as exc:
        raise FetchError("failed", str(exc).removeprefix("ERROR: ").splitlines()[0]) from exc
    return Fetched(path, path.stat().st_size)
