"""Getting a manifest row's video onto disk: local files are copied, urls go through yt-dlp's Python API.

A remote video is downloaded into a private temporary folder and renamed to `<id><ext>` only when
complete, so a file under its final name is always a whole video: that is what makes the download
stage resumable. Failures are classified as `unavailable` (permanent: removed, private, blocked,
not a video, live) or `failed` (transient: network, timeout, HTTP 429/5xx), with yt-dlp's message.

yt-dlp runs in worker processes (acquire.worker), one attempt at a time, so a video that never ends
is killed at `download.video_timeout_s`; `Fetcher` retries, paces, and gives up on a dead network.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipvideo.acquire.links import LinkError, parse_link
from clipvideo.acquire.network import (
    REACHED,
    UNKNOWN,
    UNREACHABLE,
    AddressPolicy,
    NetworkHealth,
    PrivateAddressError,
    error_chain,
    guard_connections,
    network_outcome,
    unreachable,
)
from clipvideo.acquire.programs import guard_programs
from clipvideo.acquire.worker import WorkerFailed, WorkerPool, WorkerStopped, WorkerTimeout
from clipvideo.config.schema import DownloadParams, DownloadSettings
from clipvideo.core.contracts import VIDEO_SUFFIXES
from clipvideo.core.errors import ParamsError
from clipvideo.core.files import TMP_SUFFIX, atomic_path
from clipvideo.core.ids import YOUTUBE_ID, is_safe_id
from clipvideo.core.text import shorten

MAX_REASON_CHARS = 500
# The network is judged unreachable when this many first attempts (fewer if fewer videos) reach no host.
HEALTH_VERDICT_AFTER = 8

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
# A scheduled live stream or premiere: nothing to download before it airs.
UPCOMING_MESSAGES = ("live event will begin", "premieres in", "premiere will begin")
LIVE = "live stream"
UPCOMING = "upcoming (not yet broadcast)"
PLAYLIST = "a playlist, not a single video"
# Programs yt-dlp names when a format needs one; a download never runs one (acquire.programs).
EXTERNAL_PROGRAMS = ("ffmpeg", "rtmpdump")
NEEDS_PROGRAM = "needs {program}, which a download never runs (it would connect past the private-network check)"
JUST_ENDED = "a live stream that has just ended (retried on the next run, once the site has processed it)"
# yt-dlp's wrapping around the part of a message a person needs.
EXTRACTOR_PREFIX = re.compile(r"^\[[^\]\s]+\] (?:[^\s:]+: )?")  # "[generic] x: ", "[youtube] abcdefghijk: "
UNABLE_PREFIX = re.compile(r"^Unable to (?:download|extract) [^:]{1,40}: ")  # "Unable to download webpage: "
CAUSED_BY = re.compile(r" \(caused by .*?\)(?=;|$)")  # repeats the message it follows
INSTALL_HINT = re.compile(r"\.? ?please install\b.*$", re.IGNORECASE)  # advice that does not apply here
BUG_REPORT = re.compile(r";? ?please report this issue on .*$", re.IGNORECASE)
PERMANENT_HTTP = (404, 410, 451)  # 400 is left transient: on YouTube it usually means an outdated yt-dlp


class FetchError(Exception):
    """A video that could not be fetched; `status` is `unavailable` (permanent), `failed` (retry) or `invalid`.

    `unreachable`: the attempt reached no host (no name resolution, connection refused, no route)."""

    def __init__(self, status: str, reason: str, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.unreachable = unreachable


class FetchStopped(Exception):
    """The fetcher stopped (the network is unreachable, or the stage is ending): no verdict for this video."""


@dataclass(frozen=True)
class Fetched:
    path: Path
    bytes: int


@dataclass(frozen=True)
class Cookies:
    """Where yt-dlp finds cookies: a file (download.cookies, resolved against the project) and/or a browser
    profile (download.cookies_from_browser, parsed by yt-dlp), checked before any download."""

    file: str | None = None
    browser: tuple[str | None, ...] | None = None

    @classmethod
    def from_settings(cls, settings: DownloadSettings, root: Path) -> Cookies:
        file = None
        if settings.cookies is not None:
            path = Path(settings.cookies).expanduser()
            path = path if path.is_absolute() else root / path
            if not path.is_file():
                raise ParamsError(f"settings.yaml: download.cookies={settings.cookies!r}: no such file")
            file = str(path)
        return cls(file, browser_spec(settings.cookies_from_browser))

    def ytdlp_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.file:
            options["cookiefile"] = self.file
        if self.browser:
            options["cookiesfrombrowser"] = tuple(self.browser)
        return options


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


def check_cookies(cookies: Cookies) -> None:
    """Load the configured cookies once, so a wrong file or browser stops the stage before any download."""
    if not (cookies.file or cookies.browser):
        return
    import yt_dlp

    key = "download.cookies" if cookies.file else "download.cookies_from_browser"
    options = {"logger": SilentLogger(), **cookies.ytdlp_options()}
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            _ = ydl.cookiejar
    except yt_dlp.utils.YoutubeDLError as exc:
        raise ParamsError(f"settings.yaml: {key}: yt-dlp cannot load these cookies ({reason_text(str(exc))})") from exc


def retry_pause(backoff_s: float, retry: int) -> float:
    """The wait before retry `retry` (1, 2, ...): download.backoff_s, doubled for each retry after the first."""
    return backoff_s * 2 ** (retry - 1)


class RequestPacer:
    """At least `interval_s` between the starts of two requests, across all worker threads."""

    def __init__(self, interval_s: float, sleep: Callable[[float], object] = time.sleep) -> None:
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


def local_source(url: str, root: Path, allowed_dir: Path | None) -> Path:
    """The local file a manifest url names, only if it lies inside `allowed_dir`; None: wherever it lies (the
    folder source, a CSV's relative path: the manifest judged the path, the frames step checks the bytes)."""
    source = root / url
    if allowed_dir is not None and not source.resolve().is_relative_to(allowed_dir.resolve()):
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


def ytdlp_options(
    work_dir: Path, video_id: str, params: DownloadParams, settings: DownloadSettings, cookies: Cookies
) -> dict[str, Any]:
    """One file, no merging: progressive mp4 at most max_height, else another single-file format."""
    height = params.max_height
    options: dict[str, Any] = {
        "paths": {"home": str(work_dir), "temp": str(work_dir)},
        "outtmpl": {"default": f"{video_id}.%(ext)s"},
        "format": (
            f"best[height<=?{height}][ext=mp4]/best[height<=?{height}]"
            f"/bestvideo[height<=?{height}][ext=mp4]/bestvideo[height<=?{height}]"
        ),
        "max_filesize": params.max_filesize_mb * 1024 * 1024,
        "socket_timeout": settings.socket_timeout_s,
        "retries": 0,  # the caller retries the whole video with backoff, so attempts are counted once
        "fragment_retries": 0,
        "extractor_retries": 0,
        "noplaylist": True,
        # yt-dlp's own downloaders (HLS and DASH included): they fetch what the playlist lists and stop,
        # and every request goes through the address guard; ffmpeg would follow a live playlist forever and
        # connect past the guard. No ffmpeg at all (a path that never exists: the private folder's), so no
        # fixup either; what only ffmpeg could fetch is refused (classify), and the worker refuses to start
        # it anyway (acquire.programs).
        "external_downloader": {"default": "native"},
        "ffmpeg_location": str(work_dir / "no-ffmpeg"),
        "fixup": "never",
        "match_filter": single_video_filter,
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
    return {**options, **cookies.ytdlp_options()}


def single_video_refusal(info: dict[str, Any]) -> FetchError | None:
    """Why an extracted result is not one finished video to download (live, upcoming, a playlist), or None."""
    if info.get("_type") in ("playlist", "multi_video") or info.get("playlist_index") is not None:
        return FetchError("unavailable", PLAYLIST)
    live_status = info.get("live_status")
    if info.get("is_live") or live_status == "is_live":
        return FetchError("unavailable", LIVE)
    if info.get("is_upcoming") or live_status == "is_upcoming":
        return FetchError("unavailable", UPCOMING)
    if live_status == "post_live":
        return FetchError("failed", JUST_ENDED)
    return None


def single_video_filter(info: dict[str, Any], incomplete: Any = False) -> None:
    """yt-dlp's match_filter hook: runs on every video before its download, nested extractions included."""
    refusal = single_video_refusal(info)
    if refusal:
        raise refusal


def short_reason(text: str) -> str:
    """A reason for videos.csv: whole up to MAX_REASON_CHARS, else cut at a word."""
    return shorten(text, MAX_REASON_CHARS, at_word=True)


def reason_text(message: str) -> str:
    """A one-line reason for videos.csv: yt-dlp's message without its wrapping, cut at a word boundary."""
    text = " ".join(message.replace("\r", " ").split()).removeprefix("ERROR: ")
    text = UNABLE_PREFIX.sub("", EXTRACTOR_PREFIX.sub("", text))
    text = BUG_REPORT.sub("", CAUSED_BY.sub("", text)).strip()
    return short_reason(text)


def classify(exc: BaseException, url: str = "") -> FetchError:
    """yt-dlp's error -> `unavailable` (permanent) or `failed` (transient), with a reason that leads with
    what a person needs: the refused address, the host that could not be reached, or yt-dlp's message."""
    from yt_dlp.networking.exceptions import HTTPError

    chain = error_chain(exc)
    for error in chain:
        if isinstance(error, PrivateAddressError):
            return FetchError("unavailable", short_reason(str(error)))
    lead = unreachable(exc, url)
    if lead:
        return FetchError("failed", short_reason(": ".join(lead)), unreachable=True)
    reason = reason_text(str(exc)) or type(exc).__name__
    lowered = reason.lower()
    program = next((name for name in EXTERNAL_PROGRAMS if name in lowered), None)
    if program:  # yt-dlp found no such program: the format needs one, on every retry
        detail = INSTALL_HINT.sub("", reason)
        return FetchError("unavailable", short_reason(f"{NEEDS_PROGRAM.format(program=program)}: {detail}"))
    if any(text in lowered for text in UPCOMING_MESSAGES):
        return FetchError("unavailable", short_reason(f"{UPCOMING}: {reason}"))
    if any(text in lowered for text in TRANSIENT_MESSAGES):
        return FetchError("failed", reason)
    for error in chain:
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


def warm_up() -> None:
    """In a new worker: yt-dlp's imports and extractor set-up, paid before the first video's clock starts."""
    import yt_dlp
    from yt_dlp.extractor import gen_extractor_classes

    with yt_dlp.YoutubeDL({"logger": SilentLogger(), "quiet": True}):
        for extractor in gen_extractor_classes():
            extractor.suitable("https://example.invalid/")


def download_once(
    url: str, work_dir: str, video_id: str, params: dict[str, Any], settings: dict[str, Any], cookies: dict[str, Any]
) -> dict[str, str]:
    """One attempt, in a worker process: yt-dlp's file lands in `work_dir`. Live streams, premieres and
    playlists are refused from the extracted info, before anything is downloaded (the info is processed
    as it is: no second extraction). Returns status, reason and what the attempt says about the network."""
    import yt_dlp

    download_params = DownloadParams.model_validate(params)
    download_settings = DownloadSettings.model_validate(settings)
    guard_connections(AddressPolicy(download_settings.allow_private_networks))
    options = ytdlp_options(Path(work_dir), video_id, download_params, download_settings, Cookies(**cookies))
    runtimes = [runtime["path"] for runtime in options.get("js_runtimes", {}).values()]
    guard_programs(runtimes, keyring="cookiesfrombrowser" in options)
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=False, process=False) or {}
            single_video_filter(info)
            ydl.process_ie_result(info, download=True)
    except FetchError as exc:
        return {"status": exc.status, "reason": exc.reason, "network": REACHED}
    except Exception as exc:  # yt-dlp's DownloadError, or anything else it lets through
        error = classify(exc, url)
        return {"status": error.status, "reason": error.reason, "network": network_outcome(exc, url)}
    return {"status": "ok", "reason": "", "network": REACHED}


class Fetcher:
    """Remote videos through worker processes: at most `video_timeout_s` per video, transient failures
    retried with backoff, requests paced across threads, and one verdict on the network: when the first
    attempts all fail before reaching any host, `stop` is set and every fetch ends with FetchStopped.

    Until some host has answered, an unreachable failure is not retried: the verdict comes in seconds."""

    def __init__(
        self, params: DownloadParams, settings: DownloadSettings, cookies: Cookies, expected_videos: int = 1
    ) -> None:
        self.params = params
        self.settings = settings
        self.cookies = cookies
        self.stop = threading.Event()
        self.pacer = RequestPacer(settings.sleep_s, self.stop.wait)
        self.health = NetworkHealth(min(HEALTH_VERDICT_AFTER, expected_videos), self.stop.set)
        self.workers = WorkerPool(f"{__name__}:download_once", f"{__name__}:warm_up")

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End running fetches (their worker processes are killed) and the idle workers."""
        self.stop.set()
        self.workers.close()

    def fetch(self, url: str, dest_dir: Path, video_id: str) -> Fetched:
        """Retry a transient failure up to download.retries times, waiting retry_pause() before each."""
        if not is_safe_id(video_id):
            raise FetchError("invalid", f"unsafe id {video_id[:40]!r}")
        target = remote_target(url, video_id)
        deadline = time.monotonic() + self.settings.video_timeout_s
        attempt = 0
        while True:
            self.pacer.wait()
            if self.stop.is_set():
                raise FetchStopped
            try:
                return self.attempt(target, dest_dir, video_id, deadline)
            except FetchError as exc:
                pause = retry_pause(self.settings.backoff_s, attempt + 1)
                if (
                    exc.status != "failed"
                    or attempt >= self.settings.retries
                    or (exc.unreachable and not self.health.alive)
                    or time.monotonic() + pause >= deadline
                ):
                    raise
            attempt += 1
            if self.stop.wait(pause):
                raise FetchStopped

    def attempt(self, url: str, dest_dir: Path, video_id: str, deadline: float) -> Fetched:
        """One attempt in a worker; its private folder is removed whatever happens, a kill included."""
        timeout_s = self.settings.video_timeout_s
        late = FetchError("failed", f"took longer than {timeout_s:g} s (download.video_timeout_s)")
        if time.monotonic() >= deadline:
            raise late
        work_dir = dest_dir / f".{video_id}.{os.getpid()}.{threading.get_ident()}{TMP_SUFFIX}"
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True)
        request = {
            "url": url,
            "work_dir": str(work_dir),
            "video_id": video_id,
            "params": self.params.model_dump(mode="json"),
            "settings": self.settings.model_dump(mode="json"),
            "cookies": dataclasses.asdict(self.cookies),
        }
        try:
            try:
                reply = self.workers.call(request, deadline - time.monotonic(), self.stop)
            except WorkerTimeout:
                self.health.record(UNKNOWN)
                raise late from None
            except WorkerStopped:
                raise FetchStopped from None
            except WorkerFailed as exc:
                raise FetchError("failed", reason_text(str(exc))) from exc
            self.health.record(reply["network"], reply["reason"])
            if reply["status"] != "ok":
                raise FetchError(reply["status"], reply["reason"], unreachable=reply["network"] == UNREACHABLE)
            return finish_download(work_dir, dest_dir, video_id, self.params.max_filesize_mb)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
