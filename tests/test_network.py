"""Dead networks and hostile urls, with real yt-dlp against a loopback server: live streams, playlists,
videos that never end, no network at all, and urls (or redirects) into private networks."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yt_dlp

from clipvideo.acquire.download import NETWORK_DOWN
from clipvideo.acquire.fetch import (
    NEEDS_PROGRAM,
    PLAYLIST,
    UPCOMING,
    classify,
    reason_text,
    short_reason,
    single_video_refusal,
)
from clipvideo.acquire.links import parse_link
from clipvideo.acquire.network import AddressPolicy, NetworkHealth, address_kind, parse_address
from clipvideo.config.loading import load_params, load_settings
from clipvideo.core.errors import PipelineError
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.system import ffmpeg_binary, run_ffmpeg
from clipvideo.modeling.predict import Video as PredictVideo
from clipvideo.modeling.predict import fetch
from stages import download
from tests.conftest import REPO, write_params
from tests.loopback import Body, Redirect, Video, serving
from tests.test_download import FAST, hidden_leftovers, make_project, statuses

pytestmark = pytest.mark.usefixtures("loopback_only")
M3U8 = "application/vnd.apple.mpegurl"


@pytest.fixture(scope="module")
def hls(tmp_path_factory: pytest.TempPathFactory, mp4: bytes) -> dict[str, bytes]:
    """A 2-second video cut by real ffmpeg into MPEG-TS segments: {segment name: bytes}."""
    folder = tmp_path_factory.mktemp("hls")
    (folder / "clip.mp4").write_bytes(mp4)
    segments = ["-hls_time", "1", "-hls_list_size", "0", "-hls_segment_filename", str(folder / "seg%d.ts")]
    run_ffmpeg(["-i", str(folder / "clip.mp4"), "-c", "copy", "-f", "hls", *segments, str(folder / "index.m3u8")])
    return {path.name: path.read_bytes() for path in sorted(folder.glob("seg*.ts"))}


def playlist(segments: list[str], prefix: str, ended: bool) -> bytes:
    """A media playlist; without #EXT-X-ENDLIST it is a live stream (more segments would come)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2"]
    lines.append("#EXT-X-MEDIA-SEQUENCE:0" if ended else "#EXT-X-MEDIA-SEQUENCE:7")
    for name in segments:
        lines += ["#EXTINF:1.0,", f"{prefix}{name}"]
    return ("\n".join([*lines, *(["#EXT-X-ENDLIST"] if ended else [])]) + "\n").encode()


@pytest.fixture
def ffmpeg_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """ffmpeg on PATH, as yt-dlp would find and run it (a live HLS stream, an encrypted one), through a script
    that notes every start in the file it returns before it runs the real ffmpeg."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "real-ffmpeg").symlink_to(ffmpeg_binary())
    started = tmp_path / "ffmpeg-started.txt"
    script = bin_dir / "ffmpeg"
    script.write_text(f'#!/bin/sh\necho "$*" >> "{started}"\nexec "{bin_dir}/real-ffmpeg" "$@"\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return started


def test_live_streams_and_playlists_are_refused_before_any_download(
    tmp_path: Path, mp4: bytes, hls: dict[str, bytes], ffmpeg_on_path: Path
) -> None:
    names = list(hls)
    rss = (
        "<?xml version='1.0'?><rss version='2.0'><channel><title>feed</title>"
        + "".join(f"<item><title>{n}</title><link>URL/feed/{n}.mp4</link></item>" for n in ("a", "b"))
        + "</channel></rss>"
    )
    routes = {
        "/vod.m3u8": Body(playlist(names, "/vod/", ended=True), M3U8),
        "/live.m3u8": Body(playlist(names, "/live/", ended=False), "text/plain"),  # found by content
        "/feed.xml": Body(rss.encode(), "application/rss+xml"),
        "/page.html": Body(
            b'<html><head><meta http-equiv="refresh" content="0;url=/live.m3u8"></head></html>', "text/html"
        ),
        "/feed/a.mp4": Video(mp4),
        "/feed/b.mp4": Video(mp4),
        **{f"/vod/{name}": Body(data, "video/mp2t") for name, data in hls.items()},
        **{f"/live/{name}": Body(data, "video/mp2t") for name, data in hls.items()},
    }
    with serving(routes) as server:
        rss = rss.replace("URL", server.url(""))
        server.routes["/feed.xml"] = Body(rss.encode(), "application/rss+xml")
        urls = {path: server.url(path) for path in ("/vod.m3u8", "/live.m3u8", "/feed.xml", "/page.html")}
        # a regression shows as "took longer than 60 s", not as a hang
        paths = make_project(tmp_path, {url: "food" for url in urls.values()}, {"download.video_timeout_s": 60})
        assert download.main(["--root", str(tmp_path)]) == 0
        rows = statuses(paths)
        got = {path: verdict(rows, url) for path, url in urls.items()}
        assert got["/live.m3u8"] == ("unavailable", "live stream")
        assert got["/page.html"] == ("unavailable", "live stream")  # found on the way (a redirecting page)
        assert got["/feed.xml"] == ("unavailable", PLAYLIST)
        # a finished (VOD) HLS stream is one video: fetched segment by segment, to the end of its list
        assert got["/vod.m3u8"] == ("ok", "")
        vod = rows[parse_link(urls["/vod.m3u8"]).id]
        assert float(vod["duration_s"]) == pytest.approx(2, abs=0.3)
        assert all(server.count(f"/vod/{name}") == 1 for name in names)
        assert sum(server.count(f"/live/{name}") for name in names) == 0  # nothing of the live stream downloaded
        assert server.count("/feed/a.mp4") == server.count("/feed/b.mp4") == 0
        assert hidden_leftovers(paths) == []
    assert not ffmpeg_on_path.exists()  # no fixup of the HLS file either: it stays MPEG-TS, which frames reads


def test_an_encrypted_hls_stream_never_hands_its_urls_to_ffmpeg(
    tmp_path: Path, hls: dict[str, bytes], ffmpeg_on_path: Path
) -> None:
    """yt-dlp's own HLS downloader hands a playlist with `#EXT-X-KEY:METHOD=SAMPLE-AES` to ffmpeg, which resolves
    and connects on its own, past the address guard. Only 127.0.0.1 is allowed; the key and the segment are
    on 0.0.0.0 (the second server, on 127.0.0.1, answers a connection to 0.0.0.0)."""
    segment = next(iter(hls.values()))
    hidden_routes = {"/key": Body(b"k" * 16, "application/octet-stream"), "/seg0.ts": Body(segment, "video/mp2t")}
    with serving(hidden_routes) as hidden:
        port = hidden.httpd.server_address[1]
        encrypted = "\n".join(
            [
                "#EXTM3U",
                "#EXT-X-VERSION:3",
                "#EXT-X-TARGETDURATION:2",
                "#EXT-X-MEDIA-SEQUENCE:0",
                f'#EXT-X-KEY:METHOD=SAMPLE-AES,URI="http://0.0.0.0:{port}/key"',
                "#EXTINF:1.0,",
                f"http://0.0.0.0:{port}/seg0.ts",
                "#EXT-X-ENDLIST",
                "",
            ]
        )
        with serving({"/sample-aes.m3u8": Body(encrypted.encode(), M3U8)}) as server:
            url = server.url("/sample-aes.m3u8")
            overrides = {"download.allow_private_networks": ["127.0.0.1/32"], "download.video_timeout_s": 60}
            paths = make_project(tmp_path, {url: "food"}, overrides)
            assert download.main(["--root", str(tmp_path)]) == 2  # no video: fewer than download.min_videos
            assert server.count("/sample-aes.m3u8") >= 1
        assert hidden.total() == 0 and hidden.hosts == {}
    status, reason = verdict(statuses(paths), url)
    assert status == "unavailable" and reason.startswith(NEEDS_PROGRAM.format(program="ffmpeg")), reason
    assert "Please install" not in reason
    assert not ffmpeg_on_path.exists()  # not even to ask its version
    assert hidden_leftovers(paths) == []


def test_a_download_worker_starts_no_program_but_the_allowed_ones(tmp_path: Path) -> None:
    """The hook in a fresh interpreter (it cannot be removed): only the allowed program starts."""
    code = (
        "import os, subprocess, sys\n"
        "from clipvideo.acquire.programs import ProgramRefused, guard_programs\n"
        "guard_programs(['true'], keyring=False)\n"
        "print(subprocess.run(['true']).returncode)\n"
        "for start in (lambda: subprocess.run(['ffmpeg', '-version']), lambda: subprocess.run('true', shell=True),\n"
        "              lambda: os.system('true'), lambda: os.execv('/bin/echo', ['echo']), os.fork):\n"
        "    try:\n"
        "        start()\n"
        "    except ProgramRefused as exc:\n"
        "        print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "0" and len(lines) == 6, lines
    assert [line.split(":")[0] for line in lines[1:]] == [
        "refused to start ffmpeg",
        "refused to start sh",
        "refused to start os.system",
        "refused to start echo",
        "refused to start os.fork",
    ]


def test_a_video_past_its_time_limit_is_killed_and_the_next_one_is_fetched(tmp_path: Path, mp4: bytes) -> None:
    routes = {
        "/trickle.mp4": Video(mp4, chunk_bytes=256, chunk_delay_s=0.2),  # about 16 s of body
        "/good.mp4": Video(mp4),
    }
    with serving(routes) as server:
        overrides = {"download.video_timeout_s": 3, "download.workers": 1, "download.retries": 2}
        paths = make_project(tmp_path, {server.url(path): "travel" for path in routes}, overrides)
        assert download.main(["--root", str(tmp_path)]) == 0
        rows = statuses(paths)
        trickle = rows[parse_link(server.url("/trickle.mp4")).id]
        good = rows[parse_link(server.url("/good.mp4")).id]
        assert (trickle["status"], trickle["reason"]) == ("failed", "took longer than 3 s (download.video_timeout_s)")
        assert good["status"] == "ok" and (tmp_path / good["path"]).read_bytes() == mp4
        assert server.count("/trickle.mp4") == 2  # one attempt (probe + download): past its time, no retry
        assert hidden_leftovers(paths) == []  # the partial download went with the killed worker
        assert sorted(p.name for p in paths.videos_dir.iterdir()) == [".format.json", Path(good["path"]).name]


def verdict(rows: dict[str, dict[str, str]], url: str) -> tuple[str, str]:
    row = rows[parse_link(url).id]
    return row["status"], row["reason"]


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("where", ["no name resolution", "connection refused"])
def test_a_dead_network_stops_the_stage_in_one_line_and_loses_nothing(tmp_path: Path, capsys, where: str) -> None:
    if where == "no name resolution":  # .invalid never resolves (RFC 2606), without leaving the machine
        links = {f"http://videos{n}.example.invalid/v.mp4": "food" for n in range(20)}
    else:
        port = closed_port()
        links = {f"http://127.0.0.1:{port}/v{n}.mp4": "food" for n in range(20)}
    paths = make_project(tmp_path, links, {"download.retries": 3, "download.workers": 2})
    assert download.main(["--root", str(tmp_path)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("download: error:")]
    assert len(errors) == 1, errors
    lead = "cannot resolve host videos" if where == "no name resolution" else "connection refused"
    assert errors[0].startswith("download: error: the network is unreachable: the first 8 attempts all failed")
    assert lead in errors[0] and "nothing was lost" in errors[0] and str(paths.videos_table) in errors[0]
    rows = statuses(paths)
    assert len(rows) == len(links) and {row["status"] for row in rows.values()} == {"failed"}
    tried = [row for row in rows.values() if lead in row["reason"]]
    untried = [row for row in rows.values() if row["reason"] == NETWORK_DOWN]
    assert 8 <= len(tried) <= 9 and len(tried) + len(untried) == len(links)  # 9: the other worker's last one
    assert hidden_leftovers(paths) == []


def test_unreachable_hosts_among_reachable_ones_do_not_stop_the_stage(tmp_path: Path, mp4: bytes) -> None:
    with serving({"/good.mp4": Video(mp4)}) as server:
        dead = f"http://127.0.0.1:{closed_port()}/v.mp4"
        paths = make_project(tmp_path, {server.url("/good.mp4"): "food", dead: "food"}, {"download.workers": 1})
        assert download.main(["--root", str(tmp_path)]) == 0
    rows = statuses(paths)
    assert rows[parse_link(server.url("/good.mp4")).id]["status"] == "ok"
    refused = rows[parse_link(dead).id]
    assert refused["status"] == "failed" and refused["reason"].startswith("cannot connect to 127.0.0.1: connection")


def test_private_addresses_are_refused_before_any_request(tmp_path: Path, mp4: bytes) -> None:
    with serving({"/good.mp4": Video(mp4)}) as server:
        port = server.httpd.server_address[1]
        links = {server.url("/good.mp4"): "food", f"http://localhost:{port}/good.mp4": "food"}
        paths = make_project(tmp_path, links, {"download.allow_private_networks": False})
        assert download.main(["--root", str(tmp_path)]) == 2  # fewer than min_videos=1
        assert server.total() == 0
    rows = list(statuses(paths).values())
    assert [(row["status"], row["reason"]) for row in rows] == [
        ("unavailable", "refused: 127.0.0.1 is a loopback address (download.allow_private_networks is off)"),
        (
            "unavailable",
            "refused: localhost resolves to a loopback address 127.0.0.1 (download.allow_private_networks is off)",
        ),
    ]


def test_rows_the_private_network_setting_refused_are_judged_again_when_it_changes(tmp_path: Path, mp4: bytes) -> None:
    """A refusal by download.allow_private_networks is a fact about the setting, not the video: without
    retry_unavailable, a changed setting that still refuses the address updates the reason and sends nothing,
    and one that allows it fetches the video."""
    with serving({"/good.mp4": Video(mp4)}) as server:
        url = server.url("/good.mp4")
        paths = make_project(tmp_path, {url: "food"}, {"download.allow_private_networks": False})
        assert download.main(["--root", str(tmp_path)]) == 2  # fewer than min_videos=1
        off = "refused: 127.0.0.1 is a loopback address (download.allow_private_networks is off)"
        assert verdict(statuses(paths), url) == ("unavailable", off)
        write_params(tmp_path, {**FAST, "download.allow_private_networks": ["10.0.0.0/8"]})
        assert download.main(["--root", str(tmp_path)]) == 2
        elsewhere = "refused: 127.0.0.1 is a loopback address (not in download.allow_private_networks)"
        assert verdict(statuses(paths), url) == ("unavailable", elsewhere)
        assert server.total() == 0
        write_params(tmp_path, {**FAST, "download.allow_private_networks": ["127.0.0.1/32"]})
        assert download.main(["--root", str(tmp_path)]) == 0
        assert verdict(statuses(paths), url) == ("ok", "") and server.count("/good.mp4") == 2


def test_a_redirect_to_a_private_address_is_refused(tmp_path: Path, mp4: bytes) -> None:
    """Only 127.0.0.1 is allowed: a redirect from it to 127.0.0.2 (nothing listens there) is refused by the
    check, not by a failed connection."""
    with serving({"/good.mp4": Video(mp4)}) as server:
        port = server.httpd.server_address[1]
        server.routes["/moved.mp4"] = Redirect(f"http://127.0.0.2:{port}/good.mp4")
        links = {server.url("/good.mp4"): "food", server.url("/moved.mp4"): "food"}
        paths = make_project(tmp_path, links, {"download.allow_private_networks": ["127.0.0.1/32"]})
        assert download.main(["--root", str(tmp_path)]) == 0
        rows = statuses(paths)
        assert rows[parse_link(server.url("/good.mp4")).id]["status"] == "ok"
        moved = rows[parse_link(server.url("/moved.mp4")).id]
        expected = "refused: 127.0.0.2 is a loopback address (not in download.allow_private_networks)"
        assert (moved["status"], moved["reason"]) == ("unavailable", expected)
        assert server.count("/moved.mp4") >= 1 and server.count("/good.mp4") == 2  # the good row's own two


def test_predict_refuses_a_private_url_in_one_line(tmp_path: Path, mp4: bytes) -> None:
    write_params(tmp_path, {**FAST, "download.allow_private_networks": False})
    params, settings = load_params(tmp_path / "params.yaml"), load_settings(tmp_path / "settings.yaml")
    with serving({"/new.mp4": Video(mp4)}) as server:
        video = PredictVideo(server.url("/new.mp4"), None)
        fetch(video, tmp_path, ProjectPaths(tmp_path), params, settings)
        assert server.total() == 0
    assert (video.path, video.status) == (None, "error")
    assert video.reason == (
        "cannot download (refused: 127.0.0.1 is a loopback address (download.allow_private_networks is off))"
    )


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),  # NAT64 of a public address: an IPv6-only network's view of the internet
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata service
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "private"),  # reserved: Python counts it private
        ("::1", "loopback"),
        ("fe80::1%eth0", "link-local"),
        ("fc00::1", "private"),
        ("::ffff:10.0.0.1", "private"),  # IPv4-mapped
        ("2002:a00:1::1", "private"),  # 6to4 of 10.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ],
)
def test_address_kinds(address: str, kind: str | None) -> None:
    parsed = parse_address(address)
    assert parsed is not None and address_kind(parsed) == kind


def test_address_policy_refuses_if_any_address_is_private_unless_allowed() -> None:
    assert AddressPolicy().refusal("cdn.example", ["8.8.8.8", "2001:4860:4860::8888"]) is None
    assert AddressPolicy().refusal("cdn.example", ["8.8.8.8", "10.0.0.7"]) == (
        "refused: cdn.example resolves to a private address 10.0.0.7 (download.allow_private_networks is off)"
    )
    assert AddressPolicy(True).refusal("cdn.example", ["10.0.0.7"]) is None
    assert AddressPolicy(("10.0.0.0/8",)).refusal("nas.local", ["10.0.0.7", "::ffff:10.0.0.8"]) is None
    assert "192.168.0.2" in (AddressPolicy(("10.0.0.0/8",)).refusal("nas.local", ["192.168.0.2"]) or "")
    assert AddressPolicy().refusal("0.0.0.0", ["0.0.0.0"]) == (
        "refused: 0.0.0.0 is an unspecified address (download.allow_private_networks is off)"
    )
    assert AddressPolicy().refusal("zero.example", ["::"]) == (
        "refused: zero.example resolves to an unspecified address :: (download.allow_private_networks is off)"
    )


@pytest.mark.parametrize(
    ("value", "ok"),
    [(True, True), (False, True), (["10.1.2.0/24", "127.0.0.1"], True), (["not a network"], False), ("yes", False)],
)
def test_allow_private_networks_setting(tmp_path: Path, value: object, ok: bool) -> None:
    write_params(tmp_path, {"download.allow_private_networks": value})
    if ok:
        load_settings(tmp_path / "settings.yaml")
        return
    with pytest.raises(PipelineError) as error:
        load_settings(tmp_path / "settings.yaml")
    expected = f"settings.yaml: download.allow_private_networks={value!r}: expected true, false or a list of IP"
    assert str(error.value).startswith(expected)


def test_network_health_verdict() -> None:
    dead = NetworkHealth(3)
    for _ in range(3):
        dead.record("unreachable", "cannot resolve host x")
    assert dead.dead and not dead.alive and dead.first_reason == "cannot resolve host x"
    alive = NetworkHealth(3)
    for outcome in ("unreachable", "reached", "unreachable", "unreachable", "unreachable"):
        alive.record(outcome)
    assert alive.alive and not alive.dead  # one host answered: later failures are retried as usual


@pytest.mark.parametrize(
    ("info", "reason"),
    [
        ({"_type": "playlist", "entries": []}, PLAYLIST),
        ({"id": "x", "playlist_index": 1}, PLAYLIST),
        ({"id": "x", "is_live": True}, "live stream"),
        ({"id": "x", "live_status": "is_upcoming"}, UPCOMING),
        ({"id": "x", "live_status": "post_live"}, "a live stream that has just ended"),
        ({"id": "x", "live_status": "was_live"}, None),
        ({"id": "x"}, None),
    ],
)
def test_single_video_refusal(info: dict, reason: str | None) -> None:
    refusal = single_video_refusal(info)
    assert (refusal.reason[: len(reason)] if refusal else None) == reason


def test_reasons_lead_with_what_a_person_needs_and_are_cut_at_a_word(tmp_path: Path) -> None:
    options = {"quiet": True, "no_warnings": True, "logger": None}
    with yt_dlp.YoutubeDL(options) as ydl, pytest.raises(yt_dlp.utils.DownloadError) as raised:
        ydl.extract_info("https://www.youtube.example.invalid/watch?v=abcdefghijk", download=False)
    error = classify(raised.value, "https://www.youtube.example.invalid/watch?v=abcdefghijk")
    assert error.status == "failed" and error.unreachable
    assert error.reason.startswith("cannot resolve host www.youtube.example.invalid (no network?): [Errno")
    assert error.reason.endswith(("known", "resolution"))  # the whole OS message, not "[Errno "
    long = reason_text("ERROR: [generic] x: Unable to download webpage: " + "word " * 200 + "(caused by X('y'))")
    assert long.startswith("word word") and long.endswith("word...") and len(long) <= 500
    assert short_reason("a" * 600).endswith("...") and len(short_reason("a" * 600)) == 500
