"""The per-video cache: cost follows the change (new, removed and replaced videos), the bytes of a run from nothing,
damaged entries recomputed, the size cap, and two queued experiments sharing it."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import av
import open_clip
import PIL
import pytest
import torch
import yaml

from clipvideo.core.cache import VideoCache, cache_root
from clipvideo.core.contracts import VIDEOS_COLUMNS
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.tables import read_table, write_table
from stages import embed, frames
from tests.conftest import REPO, SHRUNK, assert_same_outputs, cache_entries, run_command, write_params


# ------------------------------------------------------------------------------------------------ the store
def test_an_entry_is_served_only_while_its_payload_matches_its_record(tmp_path: Path) -> None:
    cache = VideoCache(tmp_path / "cache", max_bytes=10**9)
    entry = cache.put("frames", "ab" * 32, {"status": "ok"}, b"frames bytes", ".npz")
    assert entry.payload is not None and entry.payload.read_bytes() == b"frames bytes"
    assert cache.get("frames", "ab" * 32) == entry
    assert cache.get("frames", "cd" * 32) is None
    entry.payload.write_bytes(b"frames")  # truncated in place
    assert cache.get("frames", "ab" * 32) is None  # detected, removed, never served
    assert list((tmp_path / "cache").rglob(f"{'ab' * 32}*")) == []
    record_only = cache.put("frames", "ef" * 32, {"status": "error", "reason": "no video stream"})
    assert record_only.payload is None and cache.get("frames", "ef" * 32).record["status"] == "error"
    (tmp_path / "cache" / "frames" / "ef" / f"{'ef' * 32}.json").write_text("{not json")
    assert cache.get("frames", "ef" * 32) is None


def test_the_size_cap_evicts_the_least_recently_used_and_never_what_this_run_used(tmp_path: Path) -> None:
    earlier = VideoCache(tmp_path / "cache", max_bytes=10**9)
    for number in range(4):
        earlier.put("frames", f"{number:064x}", {"n": number}, bytes(1000), ".npz")
        time.sleep(0.01)  # distinct modification times: the order of use
    assert earlier.get("frames", f"{0:064x}") is not None  # used again: now the most recent
    now = VideoCache(tmp_path / "cache", max_bytes=3000)  # room for about two entries
    now.put("frames", f"{9:064x}", {"n": 9}, bytes(1000), ".npz")  # this run's: kept whatever the cap
    assert now.evict() == 3
    left = sorted(path.stem for path in (tmp_path / "cache").rglob("*.json"))
    assert left == [f"{0:064x}", f"{9:064x}"]  # the recently used one and this run's


def write_entry(root: Path, number: int) -> None:
    VideoCache(root, 10**9).put("frames", "ab" * 32, {"writer": "any"}, bytes([number % 256]) * 200_000, ".npz")


def test_writers_at_once_never_tear_an_entry(tmp_path: Path) -> None:
    """Processes writing the same entry at the same time (two queued experiments decoding the same video) write
    the same bytes under names unique to each; whichever rename is last, the entry is whole."""
    root = tmp_path / "cache"
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        pool.starmap(write_entry, [(root, 7)] * 16)
    entry = VideoCache(root, 10**9).get("frames", "ab" * 32)
    assert entry is not None and entry.payload is not None and entry.payload.read_bytes() == bytes([7]) * 200_000
    assert list(root.rglob("*.tmp")) == []


def test_the_cache_lives_in_dvcs_cache_folder_or_where_settings_say(tmp_path: Path) -> None:
    assert cache_root(tmp_path, None) == tmp_path / ".clipvideo-cache"  # not a DVC repository
    assert cache_root(tmp_path, "elsewhere") == tmp_path / "elsewhere"
    assert cache_root(REPO, None) == REPO / ".dvc" / "cache" / "clipvideo"


# ------------------------------------------------------------------------------- cost follows the change
def frames_and_embed(root: Path, capsys: pytest.CaptureFixture) -> tuple[str, str]:
    """Run the two stages; their summary lines."""
    capsys.readouterr()
    assert frames.main(["--root", str(root)]) == 0
    frames_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert embed.main(["--root", str(root)]) == 0
    return frames_line, capsys.readouterr().out.strip().splitlines()[-1]


def set_videos(paths: ProjectPaths, source_rows: list, keep: int) -> None:
    write_table(paths.videos_table, VIDEOS_COLUMNS, source_rows[:keep])


def test_a_rerun_decodes_and_embeds_only_what_changed_and_writes_the_bytes_of_a_run_from_nothing(
    project: ProjectPaths, tiny_model_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_params(project.root, {**SHRUNK, "embed.model": str(tiny_model_config)})
    rows = read_table(project.videos_table, VIDEOS_COLUMNS)
    assert len(rows) == 12

    set_videos(project, rows, 10)
    frames_line, embed_line = frames_and_embed(project.root, capsys)
    assert "10 videos decoded, 0 reused from the cache" in frames_line
    assert "10 videos embedded, 0 reused from the cache" in embed_line
    set_videos(project, rows, 12)  # +2 new videos
    frames_line, embed_line = frames_and_embed(project.root, capsys)
    assert "2 videos decoded, 10 reused from the cache" in frames_line
    assert "2 videos embedded, 10 reused from the cache" in embed_line

    set_videos(project, rows, 10)  # -2 videos
    frames_line, embed_line = frames_and_embed(project.root, capsys)
    assert "0 videos decoded, 10 reused from the cache" in frames_line
    assert "0 videos embedded, 10 reused from the cache" in embed_line

    set_videos(project, rows, 12)
    replaced = project.root / rows[4]["path"]  # its bytes changed in place: same size, same modification time
    before, data = replaced.stat(), bytearray(replaced.read_bytes())
    data[-16:] = bytes(16)  # the last bytes of the media data: still a video, other pixels at its end
    replaced.write_bytes(bytes(data))
    os.utime(replaced, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert replaced.stat().st_size == before.st_size and replaced.stat().st_mtime_ns == before.st_mtime_ns
    frames_line, embed_line = frames_and_embed(project.root, capsys)
    assert "1 video decoded, 11 reused from the cache" in frames_line

    fresh = tmp_path / "fresh"  # the same 12 videos from nothing, with an empty cache
    shutil.copytree(project.root, fresh, ignore=shutil.ignore_patterns(".clipvideo-cache", "frames*", "embeddings"))
    frames_line, embed_line = frames_and_embed(fresh, capsys)
    assert "12 videos decoded, 0 reused from the cache" in frames_line
    assert_same_outputs(project.root, fresh)
    assert cache_entries(project.root, "frames") >= 12


def test_a_damaged_entry_is_recomputed_and_the_outputs_do_not_change(
    project: ProjectPaths, tiny_model_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_params(project.root, {**SHRUNK, "embed.model": str(tiny_model_config)})
    frames_and_embed(project.root, capsys)
    reference = tmp_path / "reference"
    shutil.copytree(project.root / "data", reference / "data")
    payloads = sorted((cache_root(project.root, None) / "embeddings").rglob("*.npy"))
    payloads[0].write_bytes(payloads[0].read_bytes()[:100])  # truncated
    frames_payload = sorted((cache_root(project.root, None) / "frames").rglob("*.npz"))[0]
    frames_payload.unlink()  # (data/frames links to it: unlinking one name loses no bytes)
    frames_line, embed_line = frames_and_embed(project.root, capsys)
    assert "1 video decoded, 11 reused" in frames_line and "1 video embedded, 11 reused" in embed_line
    assert_same_outputs(project.root, reference)


def test_frames_files_are_links_to_the_cache_entries(project: ProjectPaths, tiny_model_config: Path, capsys) -> None:
    """Stored once: data/frames/<id>.npz and the cache entry are one file (where the file system allows)."""
    write_params(project.root, {**SHRUNK, "embed.model": str(tiny_model_config)})
    frames_and_embed(project.root, capsys)
    for path in project.frames_dir.glob("*.npz"):
        assert path.stat().st_nlink == 2


def test_past_the_cap_the_least_recently_used_entries_go(project: ProjectPaths, tiny_model_config: Path, capsys):
    write_params(project.root, {**SHRUNK, "embed.model": str(tiny_model_config)})
    frames_and_embed(project.root, capsys)
    one_run = VideoCache(cache_root(project.root, None), 0).usage()[1]
    cap = {"embed.model": str(tiny_model_config), "cache.max_gb": one_run * 1.5 / 1e9}  # room for one run, not two
    write_params(project.root, {**SHRUNK, **cap, "frames_count": 3})
    assert "12 videos decoded, 0 reused" in frames_and_embed(project.root, capsys)[0]
    assert VideoCache(cache_root(project.root, None), 0).usage()[1] <= one_run * 1.5
    write_params(project.root, {**SHRUNK, **cap, "frames_count": 3})
    assert "0 videos decoded, 12 reused" in frames_and_embed(project.root, capsys)[0]  # the recent ones stayed
    write_params(project.root, {**SHRUNK, **cap})
    assert "0 videos decoded" not in frames_and_embed(project.root, capsys)[0]  # the older ones went


# ------------------------------------------------------------------------------ queued experiments at once
@pytest.mark.slow
def test_two_queued_experiments_share_the_cache_without_a_torn_or_duplicated_entry(dvc_repo: Path) -> None:
    """`dvc queue start -j 2` runs each experiment (to embed) in a temporary copy of the repository; both copies use the
    repository's cache folder, decode and embed the same videos at the same time (neither depends on the epochs)
    and write the same entries. Afterwards every entry is whole, once, and each experiment's frames are the bytes
    a run from nothing gives."""
    for epochs in (3, 4):
        run_command(
            [
                "dvc",
                "exp",
                "run",
                "embed",  # the stages up to embed: what shares the cache
                "--queue",
                "--name",
                f"epochs{epochs}",
                "-S",
                "frames_count=3",
                "-S",
                f"train.optim.epochs={epochs}",
            ],
            dvc_repo,
        )
    run_command(["dvc", "queue", "start", "-j", "2"], dvc_repo)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = run_command(["dvc", "queue", "status"], dvc_repo)
        if "Running" not in status and "Queued" not in status:
            break
        time.sleep(2)
    assert status.count("Success") == 2, status
    cache = VideoCache(cache_root(dvc_repo, None), 10**12)
    records = sorted((cache.root / "frames").rglob("*.json"))
    keys = [path.stem for path in records]
    assert len(keys) == len(set(keys)) and list(cache.root.rglob("*.tmp")) == []
    for key in keys:
        assert cache.get("frames", key) is not None  # whole: the payload matches its record
    three_frames = [
        k
        for k in keys
        if json.loads((cache.root / "frames" / k[:2] / f"{k}.json").read_text())["record"].get("n_frames") == 3
    ]
    assert len(three_frames) == 12  # the 12 videos at frames_count=3: written by both experiments, stored once
    locked = []
    for name in ("epochs3", "epochs4"):
        run_command(["dvc", "exp", "apply", name], dvc_repo)
        lock = yaml.safe_load((dvc_repo / "dvc.lock").read_text())
        locked.append({out["path"]: out["md5"] for out in lock["stages"]["frames"]["outs"]})
    assert locked[0] == locked[1]


def test_the_cache_command_says_where_and_how_large_and_clears(
    project: ProjectPaths, tiny_model_config: Path, capsys: pytest.CaptureFixture
) -> None:
    from clipvideo.cli import cache as cache_command

    write_params(project.root, {**SHRUNK, "embed.model": str(tiny_model_config)})
    frames_and_embed(project.root, capsys)
    assert cache_command.main(["--root", str(project.root)]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"{cache_root(project.root, None)}: 24 entries, ") and "MB of 20 GB" in shown
    lines = shown.splitlines()[1:]  # one per kind and fingerprint: what made the entries
    assert [line.split(",")[0] for line in lines] == ["  embeddings: 12 entries", "  frames: 12 entries"]
    assert f"torch {torch.__version__}, open_clip {open_clip.__version__}, device cpu" in lines[0]
    assert f"av {av.__version__}, ffmpeg libavcodec " in lines[1] and f"pillow {PIL.__version__}" in lines[1]
    assert cache_command.main(["clear", "--root", str(project.root)]) == 0
    assert "cleared" in capsys.readouterr().out and not cache_root(project.root, None).exists()
    assert "12 videos decoded, 0 reused" in frames_and_embed(project.root, capsys)[0]


# ------------------------------------------------------------------------------- what made the bytes
def with_runtime(monkeypatch: pytest.MonkeyPatch, **changed: object) -> None:
    """The embed runtime fingerprint, as the stage measures it, with these values changed."""
    from clipvideo.embed import embedder

    measured = embedder.encoder_runtime
    monkeypatch.setattr(embedder, "encoder_runtime", lambda *args: {**measured(*args), **changed})


RUNTIME_CHANGES = {
    "torch": lambda mp: mp.setattr(torch, "__version__", "2.0.0"),
    "open_clip": lambda mp: mp.setattr(open_clip, "__version__", "2.0.0"),
    "device": lambda mp: with_runtime(mp, device="cuda", tf32_matmul=False, tf32_cudnn=True),
    "precision path": lambda mp: with_runtime(mp, precision_path="bfloat16 weights"),
    "cpu capability": lambda mp: mp.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2"),
}


@pytest.mark.parametrize("change", RUNTIME_CHANGES)
def test_another_torch_open_clip_device_or_precision_path_misses_the_embed_cache(
    project: ProjectPaths, tiny_model_config: Path, capsys: pytest.CaptureFixture, change: str
) -> None:
    """Not the same bytes: the runtime fingerprint is part of the key, and meta.json records it."""
    write_params(project.root, {**SHRUNK, "embed.model": str(tiny_model_config)})
    assert "12 videos embedded, 0 reused" in frames_and_embed(project.root, capsys)[1]
    before = json.loads((project.embeddings_dir / "meta.json").read_text())["runtime"]
    with pytest.MonkeyPatch.context() as patched:
        RUNTIME_CHANGES[change](patched)
        frames_line, embed_line = frames_and_embed(project.root, capsys)
        after = json.loads((project.embeddings_dir / "meta.json").read_text())["runtime"]
    assert "0 videos decoded, 12 reused" in frames_line  # the frames do not depend on it
    assert "12 videos embedded, 0 reused from the cache" in embed_line
    assert after != before and cache_entries(project.root, "embeddings") == 24
    assert "0 videos embedded, 12 reused" in frames_and_embed(project.root, capsys)[1]  # the first entries: still there


@pytest.mark.parametrize("library", [av, PIL])
def test_another_decoder_or_jpeg_library_version_misses_the_frames_cache(
    project: ProjectPaths, tiny_model_config: Path, capsys: pytest.CaptureFixture, monkeypatch, library
) -> None:
    write_params(project.root, {**SHRUNK, "embed.model": str(tiny_model_config)})
    assert frames.main(["--root", str(project.root)]) == 0
    recorded = json.loads(project.frames_settings.read_text())["decoder"]
    monkeypatch.setattr(library, "__version__", "1.0.0")
    capsys.readouterr()
    assert frames.main(["--root", str(project.root)]) == 0
    assert "12 videos decoded, 0 reused from the cache" in capsys.readouterr().out
    now = json.loads(project.frames_settings.read_text())["decoder"]
    assert {key for key in now if now[key] != recorded[key]} == {"av" if library is av else "pillow"}
    assert cache_entries(project.root, "frames") == 24


def test_with_the_cache_off_a_run_neither_reads_nor_writes_it_and_writes_the_same_bytes(
    project: ProjectPaths, tiny_model_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    params = {**SHRUNK, "embed.model": str(tiny_model_config)}
    write_params(project.root, {**params, "cache.enabled": False})
    frames_line, embed_line = frames_and_embed(project.root, capsys)
    assert "12 videos decoded, 0 reused" in frames_line and "12 videos embedded, 0 reused" in embed_line
    assert not cache_root(project.root, None).exists()  # nothing written
    assert [p.name for p in project.data.iterdir() if p.name.startswith(".")] == []  # its private folder: gone
    uncached = tmp_path / "uncached"
    shutil.copytree(project.root, uncached)

    write_params(project.root, params)  # on: fills the cache
    frames_and_embed(project.root, capsys)
    assert_same_outputs(project.root, uncached)
    entries = {kind: cache_entries(project.root, kind) for kind in ("frames", "embeddings")}
    assert entries == {"frames": 12, "embeddings": 12}

    write_params(project.root, {**params, "cache.enabled": False})  # off again: what is there is not read
    frames_line, embed_line = frames_and_embed(project.root, capsys)
    assert "12 videos decoded, 0 reused" in frames_line and "12 videos embedded, 0 reused" in embed_line
    assert {kind: cache_entries(project.root, kind) for kind in ("frames", "embeddings")} == entries
    assert_same_outputs(project.root, uncached)
