"""The download stage against a loopback HTTP server with real yt-dlp: statuses, retries, resume, SIGKILL, safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yt_dlp

from clipvideo.acquire.fetch import Cookies, classify, ytdlp_options
from clipvideo.acquire.links import parse_link
from clipvideo.acquire.manifest import youtube_rows
from clipvideo.config.schema import DownloadParams, DownloadSettings
from clipvideo.core.contracts import MANIFEST_COLUMNS
from clipvideo.core.ids import url_id
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.tables import write_table
from stages import download
from tests.conftest import REPO, write_params
from tests.loopback import DropMidBody, FailFirst, HtmlPage, Stall, Status, Video, serving
from tests.test_stages import read_csv

RETRIES = 1
FAST = {
    "download.retries": RETRIES,
    "download.backoff_s": 0.05,
    "download.socket_timeout_s": 1,
    "download.sleep_s": 0,
    "download.workers": 3,
    "download.min_videos": 1,
    "download.allow_private_networks": True,  # the test server is on 127.0.0.1
}
pytestmark = pytest.mark.usefixtures("loopback_only")


def make_project(root: Path, links: dict[str, str], overrides: dict | None = None) -> ProjectPaths:
    """A project whose manifest lists `links` (link -> category) the way the manifest stage judges them."""
    write_params(root, {**FAST, **(overrides or {})})
    paths = ProjectPaths(root)
    rows = youtube_rows(
        [
            {"link": link, "title": f"video {n}", "category": category}
            for n, (link, category) in enumerate(links.items())
        ],
        ["food", "art_music", "travel", "history"],
    )
    write_table(paths.manifest, MANIFEST_COLUMNS, rows)
    return paths


def statuses(paths: ProjectPaths) -> dict[str, dict[str, str]]:
    return {row["id"]: row for row in read_csv(paths.videos_table)}


def hidden_leftovers(paths: ProjectPaths) -> list[str]:
    return sorted(p.name for p in paths.videos_dir.iterdir() if p.name.startswith(".") and p.name != ".format.json")


def test_statuses_reasons_retries_and_resume(tmp_path: Path, mp4: bytes) -> None:
    big = b"\0" * (1024 * 1024 + 1)
    routes = {
        "/good.mp4": Video(mp4),
        "/missing.mp4": Status(404),
        "/flaky.mp4": FailFirst(Status(429), 1, Video(mp4)),
        "/busy.mp4": Status(503),
        "/drop.mp4": DropMidBody(mp4),
        "/slow.mp4": Stall(2.5),
        "/page.mp4": HtmlPage(),
        "/big.mp4": Video(big),
    }
    with serving(routes) as server:
        links = {server.url(path): "food" for path in routes}
        paths = make_project(tmp_path, {**links, "JLZlCZ0": "travel"}, {"download.max_filesize_mb": 1})
        ids = {path: parse_link(server.url(path)).id for path in routes}

        assert download.main(["--root", str(tmp_path)]) == 0
        rows = statuses(paths)
        got = {path: (rows[ids[path]]["status"], rows[ids[path]]["reason"]) for path in routes}
        assert got["/good.mp4"] == ("ok", "")
        assert got["/flaky.mp4"] == ("ok", "")
        assert got["/missing.mp4"][0] == "unavailable" and "HTTP Error 404" in got["/missing.mp4"][1]
        assert got["/busy.mp4"][0] == "failed" and "HTTP Error 503" in got["/busy.mp4"][1]
        assert got["/drop.mp4"][0] == "failed" and "bytes read" in got["/drop.mp4"][1]
        assert got["/slow.mp4"][0] == "failed" and "timed out" in got["/slow.mp4"][1]
        assert got["/page.mp4"][0] == "unavailable" and "Unsupported URL" in got["/page.mp4"][1]
        assert got["/big.mp4"][0] == "unavailable" and "max_filesize_mb=1" in got["/big.mp4"][1]
        assert [row["status"] for row in rows.values() if row["category"] == "travel"] == ["invalid"]
        good = rows[ids["/good.mp4"]]
        assert (tmp_path / good["path"]).read_bytes() == mp4 and int(good["bytes"]) == len(mp4)
        assert float(good["duration_s"]) == pytest.approx(2, abs=0.2)
        assert hidden_leftovers(paths) == []

        first = dict(server.requests)
        # a direct video costs two requests (yt-dlp's probe, then the download)
        assert first["/good.mp4"] == 2
        assert first["/flaky.mp4"] == 1 + 2  # the 429, then a retry that succeeds
        assert first["/missing.mp4"] == 1 and first["/page.mp4"] == 1  # permanent: never retried
        assert first["/busy.mp4"] == RETRIES + 1 and first["/slow.mp4"] == RETRIES + 1
        assert first["/drop.mp4"] == 2 * (RETRIES + 1)

        # rerun: ok videos are not fetched again, unavailable ones are skipped, failed ones are retried
        assert download.main(["--root", str(tmp_path)]) == 0
        second = dict(server.requests)
        for path in ("/good.mp4", "/flaky.mp4", "/missing.mp4", "/page.mp4", "/big.mp4"):
            assert second[path] == first[path], path
        for path in ("/busy.mp4", "/drop.mp4", "/slow.mp4"):
            assert second[path] > first[path], path
        assert statuses(paths)[ids["/missing.mp4"]]["reason"] == got["/missing.mp4"][1]

        # retry_unavailable asks again; changing max_height fetches the ok videos anew
        write_params(tmp_path, {**FAST, "download.max_filesize_mb": 1, "download.retry_unavailable": True})
        assert download.main(["--root", str(tmp_path)]) == 0
        assert server.count("/missing.mp4") == first["/missing.mp4"] + 1
        assert server.count("/good.mp4") == first["/good.mp4"]
        write_params(tmp_path, {**FAST, "download.max_filesize_mb": 1, "download.max_height": 480})
        assert download.main(["--root", str(tmp_path)]) == 0
        assert server.count("/good.mp4") == first["/good.mp4"] + 2
        assert statuses(paths)[ids["/good.mp4"]]["status"] == "ok"


def children(pid: int) -> list[int]:
    """The processes `pid` started (from /proc: Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pids: list[int]) -> list[int]:
    """Those of `pids` still running (a zombie waiting to be reaped has ended)."""
    running = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.append(pid)
    return running


def test_sigkill_mid_download_then_rerun_loses_nothing(tmp_path: Path, mp4: bytes) -> None:
    routes = {
        "/a.mp4": Video(mp4),
        "/b.mp4": Video(mp4),
        "/slow.mp4": Video(mp4, chunk_bytes=512, chunk_delay_s=0.1),  # about 4 s of body
    }
    with serving(routes) as server:
        paths = make_project(tmp_path, {server.url(path): "art_music" for path in routes}, {"download.workers": 1})
        slow_id = parse_link(server.url("/slow.mp4")).id
        command = [sys.executable, "-m", "stages.download", "--root", str(tmp_path)]
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while server.count("/slow.mp4") < 2 and time.monotonic() < deadline:  # its download request has begun
            time.sleep(0.05)
        time.sleep(0.5)
        assert process.poll() is None, process.communicate()[0].decode()
        workers = children(process.pid)
        assert workers  # yt-dlp runs in worker processes
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert not (paths.videos_dir / f"{slow_id}.mp4").exists()  # the partial file is not under its final name
        deadline = time.monotonic() + 10
        while alive(workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert alive(workers) == []  # they noticed their parent was gone and ended
        before = dict(server.requests)

        server.routes["/slow.mp4"] = Video(mp4)
        rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
        assert rerun.returncode == 0, rerun.stderr
        rows = statuses(paths)
        assert [row["status"] for row in rows.values()] == ["ok", "ok", "ok"]
        for row in rows.values():
            assert (tmp_path / row["path"]).read_bytes() == mp4
        assert server.count("/a.mp4") == before["/a.mp4"] == 2  # done before the kill: not fetched again
        assert server.count("/b.mp4") == before["/b.mp4"] == 2
        assert hidden_leftovers(paths) == []
        assert "fetched now" in rerun.stdout and "ok" in rerun.stdout


def test_no_row_can_reach_outside_data(tmp_path: Path, mp4: bytes) -> None:
    """A hand-edited manifest cannot turn ids or urls into paths or non-http fetches: a local file outside
    data/sample/ is read (in place) only when the id is a digest of its bytes."""
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(mp4)
    with serving({"/good.mp4": Video(mp4)}) as server:
        good = server.url("/good.mp4")
        hostile = [
            ("../../x", good),
            ("/etc/passwd", good),
            ("a/b/c/d/e/f", good),
            ("$(touch pwned)", good),
            ("x" * 5000, good),
            ("aaaaaaaaaaa", good),  # a valid-looking id that does not match its url
            (url_id("file:///etc/passwd"), "file:///etc/passwd"),
            (url_id("../outside.mp4"), "../outside.mp4"),
            (url_id(str(outside)), str(outside)),
            (url_id("data/videos/x.mp4"), "data/videos/x.mp4"),  # local files: data/sample/, or in place by content
            (url_id("ftp://127.0.0.1/x.mp4"), "ftp://127.0.0.1/x.mp4"),
            (parse_link(good).id, good),
        ]
        write_params(tmp_path, FAST)
        paths = ProjectPaths(tmp_path)
        rows = [
            {"id": i, "url": u, "category": "food", "title": "", "status": "valid", "reason": ""} for i, u in hostile
        ]
        write_table(paths.manifest, MANIFEST_COLUMNS, rows)
        before = sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(paths.data))
        assert download.main(["--root", str(tmp_path)]) == 0
        after = sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(paths.data))
        assert after == before
        assert server.count("/good.mp4") == 2  # only the one matching row was fetched
    results = [row["status"] for row in read_csv(paths.videos_table)]
    assert results == ["invalid"] * (len(hostile) - 1) + ["ok"]
    assert sorted(p.name for p in paths.videos_dir.iterdir()) == [".format.json", f"{parse_link(good).id}.mp4"]


@pytest.mark.parametrize(
    ("message", "status", "reason"),
    [
        (
            "Video unavailable. This video has been removed by the uploader",
            "unavailable",
            "Video unavailable. This video has been removed by the uploader",
        ),
        ("Private video. Sign in if you've been granted access", "unavailable", None),
        ("The uploader has not made this video available in your country", "unavailable", None),
        ("Sign in to confirm you’re not a bot. Use --cookies", "failed", None),
        ("Unable to download API page: HTTP Error 429: Too Many Requests", "failed", "HTTP Error 429: Too Many"),
        ("This live event will begin in 3 hours.", "unavailable", "upcoming (not yet broadcast): This live event will"),
        ("Premieres in 10 hours", "unavailable", "upcoming (not yet broadcast): Premieres in 10 hours"),
    ],
)
def test_youtube_messages_are_classified(message: str, status: str, reason: str | None) -> None:
    """The reason leads with what a person needs: yt-dlp's "[youtube] <id>: " and "Unable to ...:" go."""
    error = classify(yt_dlp.utils.DownloadError(f"ERROR: [youtube] abcdefghijk: {message}"))
    assert error.status == status
    assert error.reason.startswith(reason or message)


def test_unknown_messages_are_transient_and_kept_whole() -> None:
    error = classify(yt_dlp.utils.DownloadError("ERROR: Something nobody has seen before"))
    assert (error.status, error.reason) == ("failed", "Something nobody has seen before")


def test_ytdlp_options_single_file_deno_and_cookies(tmp_path: Path) -> None:
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n")
    params = DownloadParams(max_height=360, max_filesize_mb=200)
    settings = DownloadSettings(cookies="cookies.txt", cookies_from_browser="chrome:Profile 1")
    options = ytdlp_options(tmp_path, "abcdefghijk", params, settings, Cookies.from_settings(settings, tmp_path))
    assert "+" not in options["format"] and "height<=?360" in options["format"]  # never a merge of two streams
    assert options["external_downloader"] == {"default": "native"}  # never an ffmpeg following a live playlist
    assert not Path(options["ffmpeg_location"]).exists() and options["fixup"] == "never"  # no ffmpeg at all
    assert Path(options["js_runtimes"]["deno"]["path"]).is_file()
    assert options["cookiefile"] == str(cookies) and options["cookiesfrombrowser"][:2] == ("chrome", "Profile 1")
    del options["cookiesfrombrowser"]  # this machine has no browser to read
    with yt_dlp.YoutubeDL(options) as ydl:  # yt-dlp accepts the options as they are
        assert ydl.params["max_filesize"] == 200 * 1024 * 1024 and len(ydl.cookiejar) == 0


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"download.cookies": "missing.txt"}, "download.cookies='missing.txt': no such file"),
        ({"download.cookies_from_browser": "netscape4"}, "download.cookies_from_browser='netscape4'"),
        ({"download.cookies_from_browser": "firefox:/nonexistent/profile"}, "download.cookies_from_browser: yt-dlp"),
        ({"download.workers": 0}, "download.workers=0"),
    ],
)
def test_bad_download_params_name_the_key(tmp_path: Path, capsys, override: dict, expected: str) -> None:
    make_project(tmp_path, {"http://127.0.0.1:9/x.mp4": "travel"}, override)  # loopback: nothing leaves
    assert download.main(["--root", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert expected in error and len(error.splitlines()) == 1
    assert os.path.exists(tmp_path / "data" / "manifest.csv") and not (tmp_path / "data" / "videos.csv").exists()


def test_summary_counts_what_was_fetched_and_what_was_removed(tmp_path: Path, mp4: bytes, capsys) -> None:
    with serving({"/good.mp4": Video(mp4), "/missing.mp4": Status(404)}) as server:
        paths = make_project(tmp_path, {server.url("/good.mp4"): "food", server.url("/missing.mp4"): "food"})
        paths.videos_dir.mkdir(parents=True)
        (paths.videos_dir / "aaaaaaaaaaa.mp4").write_bytes(mp4)  # a row that left the manifest
        (paths.videos_dir / "notes.txt").write_text("not a video")
        (paths.videos_dir / f".{url_id('x')}.123.456.tmp").mkdir()  # a killed run's temporary
        assert download.main(["--root", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert "1 fetched now (of 2 attempted)" in out
        assert "1 video removed (no longer in the manifest), 1 other file removed from videos/" in out
        assert download.main(["--root", str(tmp_path)]) == 0
        assert "0 fetched now (of 0 attempted), 1 already here, 1 skipped" in capsys.readouterr().out
