"""Getting a manifest row's video onto disk: local files are copied, urls go through yt-dlp's Python API.

A remote video is downloaded into a private temporary folder and renamed to `<id><ext>` only when
complete, so a file under its final name is always a whole video: that is what makes the download
stage resumable. Failures are classified as `unavailable` (permanent: removed, private, blocked,
not a video) or `failed` (transient: network, timeout, HTTP 429/5xx), with yt-dlp's message.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipvideo.errors import ParamsError
from clipvideo.files import TMP_SUFFIX, atomic_path
from clipvideo.manifest import YOUTUBE_ID, LinkError, is_safe_id, parse_link

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")
MAX_REASON_CHARS = 300

# yt-dlp messages (lower case) that mean the video will not come back by retrying.
PERMANENT_MESSAGES = (
    "video unavailable",
    "private video",
    "has been removed",
    "been terminated",
    "no longer available",
    "available in your country",
    "from your location",
    "geo restriction",
    "blocked it in your country",
    "is not available",
    "copyright",
    "members-only",
    "join this channel",
    "confirm your age",
    "unsupported url",
    "requested format is not available",
    "does not exist",
)
# Messages that look permanent above but are YouTube pushing back: retry later, ideally with cookies.
TRANSIENT_MESSAGES = ("not a bot", "rate-limited", "rate limited", "try again later", "too many requests")
PERMANENT_HTTP = (404, 410, 451)  # 400 is left transient: on YouTube it usually means an outdated yt-dlp


class FetchError(Exception):
    """A video that could not be fetched; `status` is `unavailable` (permanent), `failed` (retry) or `invalid`."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Fetched:
    path: Path
    bytes: int


@dataclass(frozen=True)
class FetchSettings:
    """The download params, checked; see params.yaml for what each one is for."""

    max_height: int
    max_filesize_mb: int
    retries: int
    backoff_s: float
    socket_timeout_s: float
    sleep_s: float
    cookies: Path | None = None
    cookies_from_browser: tuple[str | None, ...] | None = None

    @classmethod
    def from_params(cls, download: dict[str, Any], root: Path) -> FetchSettings:
        cookies = None
        if download["cookies"] is not None:
            cookies = Path(download["cookies"]).expanduser()
            cookies = cookies if cookies.is_absolute() else root / cookies
            if not cookies.is_file():
                raise ParamsError(f"settings.yaml: download.cookies={download['cookies']!r}: no such file")
        return cls(
            max_height=download["max_height"],
            max_filesize_mb=download["max_filesize_mb"],
            retries=download["retries"],
            backoff_s=download["backoff_s"],
            socket_timeout_s=download["socket_timeout_s"],
            sleep_s=download["sleep_s"],
            cookies=cookies,
            cookies_from_browser=browser_spec(download["cookies_from_browser"]),
        )


def browser_spec(value: str | None) -> tuple[str | None, ...] | None:
    """yt-dlp's own parse of `BROWSER[+KEYRING][:PROFILE][::CONTAINER]`, as a one-line params error."""
    if value is None:
        return None
    import yt_dlp

    try:
        return yt_dlp.parse_options(["--cookies-from-browser", value]).ydl_opts["cookiesfrombrowser"]
    except (Exception, SystemExit) as exc:  # yt-dlp's option parser exits on a bad value
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else "not understood"
        raise ParamsError(f"settings.yaml: download.cookies_from_browser={value!r}: {message}") from exc


class SilentLogger:
    """yt-dlp's messages go into videos.csv as reasons, not over the progress bar."""

    def debug(self, message: str) -> None:
        pass

    info = warning = error = debug


def check_cookies(settings: FetchSettings) -> None:
    """Load the configured cookies once, so a wrong file or browser stops the stage before any download."""
    if not (settings.cookies or settings.cookies_from_browser):
        return
    import yt_dlp

    key = "download.cookies" if settings.cookies else "download.cookies_from_browser"
    options = {"logger": SilentLogger(), **ytdlp_cookie_options(settings)}
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            _ = ydl.cookiejar
    except yt_dlp.utils.YoutubeDLError as exc:
        raise ParamsError(f"settings.yaml: {key}: yt-dlp cannot load these cookies ({one_line(str(exc))})") from exc


class RequestPacer:
    """At least `interval_s` between the starts of two requests, across all worker threads."""

    def __init__(self, interval_s: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval_s = interval_s
        self.sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval_s
        if start > now:
            self.sleep(start - now)


def is_remote(url: str) -> bool:
    """Urls yt-dlp would fetch (any scheme: `remote_target` refuses all but http(s)), or a bare YouTube id."""
    return "://" in url or bool(YOUTUBE_ID.fullmatch(url))


def remote_target(url: str, video_id: str) -> str:
    """The url to hand to yt-dlp, only if it is http(s) and names exactly the video `video_id` names."""
    try:
        link = parse_link(url)
    except LinkError as exc:
        raise FetchError("invalid", str(exc)) from exc
    if link.id != video_id:
        raise FetchError("invalid", f"id {video_id!r} does not match its url (expected {link.id!r})")
    return link.url


def local_source(url: str, root: Path, allowed_dir: Path) -> Path:
    """The local file a manifest url names, only if it lies inside `allowed_dir`."""
    source = (root / url).resolve()
    if not source.is_relative_to(allowed_dir.resolve()):
        raise FetchError("invalid", f"local path outside {allowed_dir.name}/: {url[:80]!r}")
    if source.suffix.lower() not in VIDEO_SUFFIXES:
        raise FetchError("invalid", f"not a video file name (expected {', '.join(VIDEO_SUFFIXES)}): {url[:80]!r}")
    if not source.is_file():
        raise FetchError("unavailable", f"file not found: {url}")
    return source


def copy_local(source: Path, dest_dir: Path, video_id: str) -> Fetched:
    dest = dest_dir / f"{video_id}{source.suffix.lower()}"
    with atomic_path(dest) as tmp:
        shutil.copyfile(source, tmp)
    return Fetched(dest, dest.stat().st_size)


def existing_video(dest_dir: Path, video_id: str) -> Path | None:
    """The complete video an earlier run left for `video_id`, if any (temporaries never match)."""
    for suffix in VIDEO_SUFFIXES:
        path = dest_dir / f"{video_id}{suffix}"
        if path.is_file() and path.stat().st_size > 0:
            return path
    return None


def deno_path() -> str | None:
    """The deno binary yt-dlp needs for YouTube's JavaScript challenges: on PATH, else the `deno` wheel's."""
    found = shutil.which("deno")
    if found:
        return found
    try:
        import deno

        return str(deno.find_deno_bin())
    except (ImportError, OSError, RuntimeError):
        return None


def ytdlp_options(work_dir: Path, video_id: str, settings: FetchSettings) -> dict[str, Any]:
    """One file, no merging: progressive mp4 at most max_height, else another single-file format."""
    height = settings.max_height
    options: dict[str, Any] = {
        "paths": {"home": str(work_dir), "temp": str(work_dir)},
        "outtmpl": {"default": f"{video_id}.%(ext)s"},
        "format": (
            f"best[height<=?{height}][ext=mp4]/best[height<=?{height}]"
            f"/bestvideo[height<=?{height}][ext=mp4]/bestvideo[height<=?{height}]"
        ),
        "max_filesize": settings.max_filesize_mb * 1024 * 1024,
        "socket_timeout": settings.socket_timeout_s,
        "retries": 0,  # the caller retries the whole video with backoff, so attempts are counted once
        "fragment_retries": 0,
        "extractor_retries": 0,
        "noplaylist": True,
        "logger": SilentLogger(),
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "continuedl": False,
        "overwrites": True,
        "color": {"stdout": "never", "stderr": "never"},
    }
    runtime = deno_path()
    if runtime:
        options["js_runtimes"] = {"deno": {"path": runtime}}
    return {**options, **ytdlp_cookie_options(settings)}


def ytdlp_cookie_options(settings: FetchSettings) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if settings.cookies:
        options["cookiefile"] = str(settings.cookies)
    if settings.cookies_from_browser:
        options["cookiesfrombrowser"] = settings.cookies_from_browser
    return options


def error_chain(exc: BaseException) -> list[BaseException]:
    """The exception and what caused it, as yt-dlp nests them (exc_info, cause, __cause__)."""
    chain: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or current in chain:
            continue
        chain.append(current)
        exc_info = getattr(current, "exc_info", None)
        todo += [exc_info[1] if isinstance(exc_info, tuple) else None, getattr(current, "cause", None)]
        todo += [current.__cause__, current.__context__]
    return chain


def one_line(message: str) -> str:
    text = " ".join(message.replace("\r", " ").split())
    text = text.removeprefix("ERROR: ")
    return text[:MAX_REASON_CHARS]


def classify(exc: BaseException) -> FetchError:
    """yt-dlp's error -> `unavailable` (permanent) or `failed` (transient), keeping its message as the reason."""
    from yt_dlp.networking.exceptions import HTTPError

    reason = one_line(str(exc)) or type(exc).__name__
    lowered = reason.lower()
    if any(text in lowered for text in TRANSIENT_MESSAGES):
        return FetchError("failed", reason)
    for error in error_chain(exc):
        if isinstance(error, HTTPError):
            permanent = error.status in PERMANENT_HTTP
            return FetchError("unavailable" if permanent else "failed", reason)
    if any(text in lowered for text in PERMANENT_MESSAGES):
        return FetchError("unavailable", reason)
    return FetchError("failed", reason)  # unknown: retried next run rather than given up for good


def looks_like_html(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(512).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head"))


def finish_download(work_dir: Path, dest_dir: Path, video_id: str, max_filesize_mb: int) -> Fetched:
    """Move the one complete file yt-dlp left in `work_dir` to `dest_dir/<id><ext>`."""
    done = [p for p in work_dir.iterdir() if p.is_file() and not p.name.endswith((".part", ".ytdl"))]
    if not done:
        raise FetchError("unavailable", f"no file downloaded (larger than download.max_filesize_mb={max_filesize_mb}?)")
    path = done[0]
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise FetchError("unavailable", f"not a video: yt-dlp saved a {suffix or 'suffix-less'} file")
    if path.stat().st_size == 0 or looks_like_html(path):
        raise FetchError("unavailable", "not a video: the server sent an empty file or a web page")
    final = dest_dir / f"{video_id}{suffix}"
    for other in VIDEO_SUFFIXES:  # a format change leaves no second copy behind
        (dest_dir / f"{video_id}{other}").unlink(missing_ok=True)
    os.replace(path, final)
    return Fetched(final, final.stat().st_size)


def fetch_once(url: str, dest_dir: Path, video_id: str, settings: FetchSettings) -> Fetched:
    import yt_dlp

    work_dir = dest_dir / f".{video_id}.{os.getpid()}.{threading.get_ident()}{TMP_SUFFIX}"
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    try:
        with yt_dlp.YoutubeDL(ytdlp_options(work_dir, video_id, settings)) as ydl:
            ydl.extract_info(url, download=True)
        return finish_download(work_dir, dest_dir, video_id, settings.max_filesize_mb)
    except yt_dlp.utils.DownloadError as exc:
        raise classify(exc) from exc
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def fetch_remote(
    url: str,
    dest_dir: Path,
    video_id: str,
    settings: FetchSettings,
    pacer: RequestPacer,
    sleep: Callable[[float], None] = time.sleep,
) -> Fetched:
    """Fetch, retrying a transient failure up to `settings.retries` times, backoff_s * 2**(k-1) before retry k."""
    if not is_safe_id(video_id):
        raise FetchError("invalid", f"unsafe id {video_id[:40]!r}")
    target = remote_target(url, video_id)
    attempt = 0
    while True:
        pacer.wait()
        try:
            return fetch_once(target, dest_dir, video_id, settings)
        except FetchError as exc:
            if exc.status != "failed" or attempt >= settings.retries:
                raise
        attempt += 1
        sleep(settings.backoff_s * 2 ** (attempt - 1))
