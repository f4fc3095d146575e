"""The embed loop: per-video resume after a crash from the per-video cache, the same bytes as an uninterrupted run,
embeddings that do not depend on their batch, no leftovers; meta.json."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from clipvideo.core.contracts import FRAMES_COLUMNS
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.tables import read_table
from clipvideo.embed import embedder as embeddings
from clipvideo.embed.batches import FORWARD_BATCH, plan_batches
from clipvideo.embed.embedder import BatchEmbedder, embed_here
from clipvideo.embed.encoder import load_encoder, preprocess_jpegs
from clipvideo.embed.fingerprint import encoder_runtime
from clipvideo.embed.store import ARRAY, EMBEDDING_KEYS, load_embeddings, recorded_encoder
from clipvideo.video.fingerprint import decoder_fingerprint
from clipvideo.video.store import load_frame_jpegs
from stages import embed, frames
from tests.conftest import SHRUNK, cache_entries, write_params


@pytest.fixture
def framed(project: ProjectPaths) -> ProjectPaths:
    """The shrunk sample project after the real frames stage."""
    assert frames.main(["--root", str(project.root)]) == 0
    return project


def frame_files(paths: ProjectPaths) -> tuple[list[tuple[str, Path]], list[int]]:
    rows = [r for r in read_table(paths.frames_table, FRAMES_COLUMNS) if r["status"] in ("ok", "short")]
    return [(r["id"], paths.frames_dir / f"{r['id']}.npz") for r in rows], [int(r["n_frames"]) for r in rows]


def leftovers(paths: ProjectPaths) -> list[str]:
    """Temporaries anywhere in the project (data/ and the per-video cache)."""
    return sorted(str(p.relative_to(paths.root)) for p in paths.root.rglob("*.tmp"))


def with_frames_count(paths: ProjectPaths, tiny_model_config: Path, count: int, **overrides: object) -> None:
    """Params for `count` frames per video (and the tiny model), and the frames stage run with them."""
    write_params(paths.root, {**SHRUNK, "embed.model": str(tiny_model_config), "frames_count": count, **overrides})
    assert frames.main(["--root", str(paths.root)]) == 0


def test_a_crashed_run_resumes_per_video_and_gives_the_same_bytes(
    framed: ProjectPaths,
    tiny_model_config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """12 videos of 16 frames: 3 forward batches of 64, 4 videos each. A crash in the second keeps the 4 videos
    of the first in the cache; the rerun embeds the other 8 and writes the bytes of an uninterrupted run."""
    with_frames_count(framed, tiny_model_config, 16, **{"cache.dir": str(tmp_path / "reference-cache")})
    assert embed.main(["--root", str(framed.root)]) == 0
    uninterrupted = (framed.embeddings_dir / ARRAY).read_bytes()
    shutil.rmtree(framed.embeddings_dir)
    write_params(framed.root, {**SHRUNK, "embed.model": str(tiny_model_config), "frames_count": 16})
    real_encode = embeddings.encode_batch
    calls: list[int] = []

    def encode_then_crash(encoder_, batch):  # the crash: the process dies during the 2nd batch
        calls.append(len(batch))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_encode(encoder_, batch)

    monkeypatch.setattr(embeddings, "encode_batch", encode_then_crash)
    assert embed.main(["--root", str(framed.root)]) == 130  # stopped: one line, what finished is kept
    assert not framed.embeddings_dir.exists()  # the final output only ever appears complete
    assert cache_entries(framed.root, "embeddings") == 4  # the videos of the finished batch

    calls.clear()
    monkeypatch.setattr(embeddings, "encode_batch", lambda e, b: calls.append(len(b)) or real_encode(e, b))
    capsys.readouterr()
    assert embed.main(["--root", str(framed.root)]) == 0
    assert calls == [FORWARD_BATCH] * 2  # only the 8 videos not finished: 128 frames, always full batches
    assert "8 videos embedded, 4 reused from the cache" in capsys.readouterr().out
    assert (framed.embeddings_dir / ARRAY).read_bytes() == uninterrupted
    assert leftovers(framed) == []


def embed_rows(encoder, jpegs: list[list[bytes]]) -> list[np.ndarray]:
    """Each video's float16 rows when these videos are embedded together, in this order."""
    results = list(embed_here(plan_batches([len(j) for j in jpegs], lambda i: jpegs[i]), BatchEmbedder(encoder)))
    rows = np.concatenate([r.features for r in results])
    starts = np.cumsum([0] + [len(j) for j in jpegs])
    return [rows[starts[i] : starts[i + 1]] for i in range(len(jpegs))]


def test_a_videos_embeddings_do_not_depend_on_its_batch(framed: ProjectPaths, tiny_model_config: Path) -> None:
    """Alone (a batch of padding), in a full batch with others, or shuffled among them: the same bytes."""
    videos, _ = frame_files(framed)
    jpegs = [load_frame_jpegs(path) for _, path in videos] * 2  # 24 x 4 frames: a full batch and a part
    encoder = load_encoder(str(tiny_model_config), "none", seed=42)
    together = embed_rows(encoder, jpegs)
    order = np.random.default_rng(0).permutation(len(jpegs))
    shuffled = embed_rows(encoder, [jpegs[i] for i in order])
    for i in (0, 5, 23):
        alone = embed_rows(encoder, [jpegs[i]])[0]
        assert alone.tobytes() == together[i].tobytes() == shuffled[list(order).index(i)].tobytes()


@pytest.mark.slow
def test_vit_b_32_embeddings_do_not_depend_on_their_batch(framed: ProjectPaths) -> None:
    """The same with the model the pipeline uses by default, at its real size (about 10 s on 2 cores)."""
    videos, _ = frame_files(framed)
    jpegs = [load_frame_jpegs(path) for _, path in videos]
    encoder = load_encoder("ViT-B-32", "none", seed=42)
    together = embed_rows(encoder, jpegs)
    alone = embed_rows(encoder, [jpegs[3]])[0]
    shuffled = embed_rows(encoder, jpegs[::-1])
    assert alone.tobytes() == together[3].tobytes() == shuffled[len(jpegs) - 4].tobytes()


def test_changed_frames_or_settings_never_reuse_old_embeddings(
    framed: ProjectPaths, tiny_model_config: Path, capsys: pytest.CaptureFixture
) -> None:
    write_params(framed.root, {**SHRUNK, "embed.model": str(tiny_model_config)})
    assert embed.main(["--root", str(framed.root)]) == 0
    before = load_embeddings(framed.embeddings_dir, mmap=False).frames
    capsys.readouterr()
    for change in ({"embed.seed": 43}, {"embed.precision": "bf16"}):  # another encoder: every video again
        write_params(framed.root, {**SHRUNK, "embed.model": str(tiny_model_config), **change})
        assert embed.main(["--root", str(framed.root)]) == 0
        assert "12 videos embedded, 0 reused from the cache" in capsys.readouterr().out

    write_params(framed.root, {**SHRUNK, "embed.model": str(tiny_model_config)})
    videos, _ = frame_files(framed)
    videos[0][1].write_bytes(videos[1][1].read_bytes())  # new frames for video 0 (frames.csv still says 4 frames)
    assert embed.main(["--root", str(framed.root)]) == 0
    assert "0 videos embedded, 12 reused from the cache" in capsys.readouterr().out  # video 1's, by content
    stored = load_embeddings(framed.embeddings_dir).frames
    assert stored.dtype == np.float16
    assert np.array_equal(stored[0], before[1]) and not np.array_equal(stored[0], before[0])
    assert leftovers(framed) == []


def test_weights_trained_on_another_network_stop_embed_in_one_line(framed: ProjectPaths, capsys) -> None:
    """The embed stage's own check is check_params' (architecture_for), before any download or work."""
    write_params(framed.root, {**SHRUNK, "embed.model": "ViT-B-32-quickgelu", "embed.pretrained": "laion2b_s34b_b79k"})
    assert embed.main(["--root", str(framed.root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("embed: error: params.yaml: embed.model='ViT-B-32-quickgelu' is the QuickGELU network")
    assert err.endswith("; use embed.model=ViT-B-32\n") and err.count("\n") == 1
    assert not framed.embeddings_dir.exists()


def test_a_frames_file_that_disagrees_with_frames_csv_is_named(framed: ProjectPaths, capsys) -> None:
    table = framed.frames_table.read_text()
    first = table.splitlines()[1].split(",")[0]
    framed.frames_table.write_text(table.replace(f"{first},ok,,4", f"{first},ok,,5"))
    assert embed.main(["--root", str(framed.root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"{first}.npz: not the 5 frames data/frames.csv lists; rerun the frames stage")
    assert not framed.embeddings_dir.exists()


def test_meta_records_every_setting_the_embeddings_depend_on(framed: ProjectPaths, tiny_model_config: Path) -> None:
    """The frames' settings come from data/frames/settings.json, written with them, not from params.yaml now
    (as when DVC restores the frames from its run-cache): embed does not declare frames_count or frames.*."""
    # frames_count and frames.*: the frames were not redone with these
    overrides = {"embed.seed": 7, "frames_count": 3, "frames.mode": "keyframe", "frames.size": 48}
    write_params(framed.root, {**SHRUNK, "embed.model": str(tiny_model_config), **overrides})
    assert embed.main(["--root", str(framed.root)]) == 0
    meta = load_embeddings(framed.embeddings_dir).meta
    assert recorded_encoder(meta) == {
        "model": tiny_model_config.stem,
        "pretrained": "none",
        "precision": "fp32",
        "seed": 7,
        "model_sha256": hashlib.sha256(tiny_model_config.read_bytes()).hexdigest(),  # the config file's content
        "pretrained_sha256": "",
        "frames_count": SHRUNK["frames_count"],
        "frames_size": SHRUNK["frames.size"],
        "frames_mode": "exact",
    }
    assert set(EMBEDDING_KEYS) <= set(meta)
    assert meta["runtime"] == encoder_runtime("cpu", "fp32")  # the libraries, device and precision path
    assert meta["decoder"] == json.loads(framed.frames_settings.read_text())["decoder"] == decoder_fingerprint()


@pytest.mark.parametrize("content", [None, "not json", '{"frames_count": 4}'])
def test_missing_or_bad_frames_settings_stop_embed_with_one_line(framed: ProjectPaths, capsys, content) -> None:
    if content is None:
        framed.frames_settings.unlink()
    else:
        framed.frames_settings.write_text(content)
    assert embed.main(["--root", str(framed.root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"embed: error: {framed.frames_settings}: ") and err.endswith("rerun the frames stage")
    assert len(err.splitlines()) == 1


def test_relative_model_config_and_checkpoint_paths_resolve_against_root(
    framed: ProjectPaths, tiny_model_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """embed.model: encoders/tiny.json and embed.pretrained: encoders/weights/tiny.pt mean files in the project,
    whatever the cwd."""
    (framed.root / "encoders" / "weights").mkdir(parents=True)
    shutil.copyfile(tiny_model_config, framed.root / "encoders" / "tiny.json")
    source = load_encoder(str(tiny_model_config), "none", seed=5)
    torch.save({"state_dict": source.model.state_dict()}, framed.root / "encoders" / "weights" / "tiny.pt")
    checkpoint = "encoders/weights/tiny.pt"
    write_params(framed.root, {**SHRUNK, "embed.model": "encoders/tiny.json", "embed.pretrained": checkpoint})
    monkeypatch.chdir(tmp_path)  # not the project root
    assert embed.main(["--root", str(framed.root)]) == 0
    stored = load_embeddings(framed.embeddings_dir)
    assert (stored.meta["model"], stored.meta["pretrained"]) == ("tiny", checkpoint)  # as given: no abs path
    digest = hashlib.sha256((framed.root / checkpoint).read_bytes()).hexdigest()
    assert stored.meta["pretrained_sha256"] == digest  # the checkpoint by its content

    videos, n_frames = frame_files(framed)
    first_batch = [jpeg for _, path in videos for jpeg in load_frame_jpegs(path)]  # 48 frames: one batch of 64
    expected = embeddings.encode_batch(source, preprocess_jpegs(first_batch, source)).astype(np.float16)
    np.testing.assert_array_equal(stored.frames[0, : n_frames[0]], expected[: n_frames[0]])
