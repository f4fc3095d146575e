"""The embed loop: per-video resume after a crash, the same bytes as an uninterrupted run, no leftovers; meta.json."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from clipvideo.core.checkpoint import Checkpoint
from clipvideo.core.contracts import FRAMES_COLUMNS
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.tables import read_table
from clipvideo.embed import embedder as embeddings
from clipvideo.embed.embedder import EMBED_CODE, embed_videos, encoder_recipe
from clipvideo.embed.encoder import load_encoder, preprocess_jpegs
from clipvideo.embed.store import ARRAY, EMBEDDING_KEYS, load_embeddings, recorded_encoder
from clipvideo.video.store import load_frame_jpegs
from stages import embed, frames
from tests.conftest import SHRUNK, write_params


@pytest.fixture
def framed(project: ProjectPaths) -> ProjectPaths:
    """The shrunk sample project after the real frames stage."""
    assert frames.main(["--root", str(project.root)]) == 0
    return project


def frame_files(paths: ProjectPaths) -> tuple[list[tuple[str, Path]], list[int]]:
    rows = [r for r in read_table(paths.frames_table, FRAMES_COLUMNS) if r["status"] in ("ok", "short")]
    return [(r["id"], paths.frames_dir / f"{r['id']}.npz") for r in rows], [int(r["n_frames"]) for r in rows]


def resume(paths: ProjectPaths, encoder, seed: int = 42) -> Checkpoint:
    """The resume folder the embed stage keeps for this encoder and seed."""
    return Checkpoint(paths.embeddings_resume_dir, encoder_recipe(encoder, seed), EMBED_CODE)


def leftovers(paths: ProjectPaths) -> list[str]:
    """Temporaries and resume files anywhere under data/."""
    return sorted(
        str(p.relative_to(paths.data))
        for p in paths.data.rglob("*")
        if p.name.endswith(".tmp") or "embeddings-resume" in p.parts
    )


def test_a_crashed_run_resumes_per_batch_and_gives_the_same_bytes(
    framed: ProjectPaths, tiny_model_config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Forward batches fill embed.batch_size across videos; a crash keeps the finished batches, and the rerun cuts
    the rest at the same places, so it writes the same bytes as an uninterrupted run."""
    write_params(framed.root, {**SHRUNK, "embed.model": str(tiny_model_config), "embed.batch_size": 5})
    assert embed.main(["--root", str(framed.root)]) == 0
    uninterrupted = (framed.embeddings_dir / ARRAY).read_bytes()
    shutil.rmtree(framed.embeddings_dir)

    videos, n_frames = frame_files(framed)
    assert n_frames == [4] * 12
    plans = list(embeddings.plan_batches(videos, n_frames, 5))
    assert [plan.size for plan in plans] == [5] * 9 + [3]
    assert [(s.row, s.first, s.stop) for s in plans[1].segments] == [(1, 1, 4), (2, 0, 2)]  # videos mix in a batch
    encoder = load_encoder(str(tiny_model_config), "none", seed=42)
    real_encode = embeddings.encode_batch
    calls: list[int] = []

    def encode_then_crash(encoder_, batch):  # the crash: the process dies during the 4th batch
        calls.append(len(batch))
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_encode(encoder_, batch)

    monkeypatch.setattr(embeddings, "encode_batch", encode_then_crash)
    with pytest.raises(KeyboardInterrupt):
        embed_videos(videos, n_frames, encoder, framed.embeddings_dir, 5, {}, resume(framed, encoder), seed=42)
    assert not framed.embeddings_dir.exists()  # the final output only ever appears complete
    assert len(list(framed.embeddings_resume_dir.rglob("*.npy"))) == 3  # the three finished batches

    calls.clear()
    monkeypatch.setattr(embeddings, "encode_batch", lambda e, b: calls.append(len(b)) or real_encode(e, b))
    capsys.readouterr()
    assert embed.main(["--root", str(framed.root)]) == 0
    assert calls == [5] * 6 + [3]  # only the batches not finished, composed as before
    assert "resumed 3 of 10 batches" in capsys.readouterr().out
    assert (framed.embeddings_dir / ARRAY).read_bytes() == uninterrupted
    assert leftovers(framed) == []


def test_changed_frames_or_settings_never_reuse_old_embeddings(framed: ProjectPaths, tiny_model_config: Path) -> None:
    videos, n_frames = frame_files(framed)
    fp32 = load_encoder(str(tiny_model_config), "none", seed=42)
    keys = {
        resume(framed, fp32, 42).recipe,
        resume(framed, fp32, 43).recipe,
        resume(framed, load_encoder(str(tiny_model_config), "none", seed=42, precision="bf16"), 42).recipe,
    }
    assert len(keys) == 3
    assert resume(framed, load_encoder(str(tiny_model_config), "none", seed=42)).recipe in keys  # stable across loads

    # a resume file of the first batch, from a run over different frames of the first video, is not picked up
    checkpoint = resume(framed, fp32)
    checkpoint.open()
    key_dir = checkpoint.folder
    first = next(embeddings.plan_batches(videos, n_frames, 64))
    embedder = embeddings.BatchEmbedder(fp32, key_dir)
    stale = embedder.prepare(first).resume_file
    np.save(stale, np.full((first.size, 32), 7, dtype=np.float16))
    videos[0][1].write_bytes(videos[1][1].read_bytes())  # new frames for video 0 (frames.csv still says 4 frames)
    assert embedder.prepare(first).resume_file != stale
    embed_videos(videos, n_frames, fp32, framed.embeddings_dir, 64, {}, resume(framed, fp32), seed=42)
    stored = load_embeddings(framed.embeddings_dir)
    assert stored.frames.dtype == np.float16
    assert not np.any(stored.frames[0, : n_frames[0]] == 7)
    assert leftovers(framed) == []


def test_a_frames_file_that_disagrees_with_frames_csv_is_named(framed: ProjectPaths, tiny_model_config: Path) -> None:
    videos, n_frames = frame_files(framed)
    encoder = load_encoder(str(tiny_model_config), "none", seed=42)
    wrong = [n + 1 if i == 1 else n for i, n in enumerate(n_frames)]
    with pytest.raises(embeddings.PipelineError, match=rf"{videos[1][0]}\.npz: not the {wrong[1]} frames"):
        embed_videos(videos, wrong, encoder, framed.embeddings_dir, 64, {}, resume(framed, encoder), seed=42)
    assert not framed.embeddings_dir.exists()


def test_meta_records_every_setting_the_embeddings_depend_on(framed: ProjectPaths, tiny_model_config: Path) -> None:
    """The frames' settings come from data/frames/settings.json, written with them, not from params.yaml now
    (as when DVC restores the frames from its run-cache): embed does not declare frames_count or frames.*."""
    overrides = {"seed": 7, "frames_count": 3, "frames.mode": "keyframe", "frames.size": 48}  # frames were not redone
    write_params(framed.root, {**SHRUNK, "embed.model": str(tiny_model_config), **overrides})
    assert embed.main(["--root", str(framed.root)]) == 0
    meta = load_embeddings(framed.embeddings_dir).meta
    assert recorded_encoder(meta) == {
        "model": tiny_model_config.stem,
        "pretrained": "none",
        "precision": "fp32",
        "seed": 7,
        "frames_count": SHRUNK["frames_count"],
        "frames_size": SHRUNK["frames.size"],
        "frames_mode": "exact",
    }
    assert set(EMBEDDING_KEYS) <= set(meta)


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
    """embed.model: tiny.json and embed.pretrained: weights/tiny.pt mean files in the project, whatever the cwd."""
    shutil.copyfile(tiny_model_config, framed.root / "tiny.json")
    (framed.root / "weights").mkdir()
    source = load_encoder(str(tiny_model_config), "none", seed=5)
    torch.save({"state_dict": source.model.state_dict()}, framed.root / "weights" / "tiny.pt")
    write_params(framed.root, {**SHRUNK, "embed.model": "tiny.json", "embed.pretrained": "weights/tiny.pt"})
    monkeypatch.chdir(tmp_path)  # not the project root
    assert embed.main(["--root", str(framed.root)]) == 0
    stored = load_embeddings(framed.embeddings_dir)
    assert (stored.meta["model"], stored.meta["pretrained"]) == ("tiny", "weights/tiny.pt")  # as given: no abs path

    videos, n_frames = frame_files(framed)
    first_batch = [jpeg for _, path in videos for jpeg in load_frame_jpegs(path)]  # 48 frames: one batch of 64
    expected = embeddings.encode_batch(source, preprocess_jpegs(first_batch, source)).astype(np.float16)
    np.testing.assert_array_equal(stored.frames[0, : n_frames[0]], expected[: n_frames[0]])
