"""predict on a new video: same numbers as the pipeline for a stored video, local or over loopback http."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from clipvideo.core.paths import ProjectPaths
from clipvideo.modeling.classifiers import predict_proba, variant_inputs
from clipvideo.modeling.data import split_set
from clipvideo.modeling.saved import load_model
from stages import predict, train
from tests.conftest import SHRUNK, VARIANTS, build_embedded_project, cache_entries, write_params
from tests.loopback import Video, serving

pytestmark = pytest.mark.usefixtures("loopback_only")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, downloaded_sample, tiny_model_config) -> ProjectPaths:
    root = tmp_path_factory.mktemp("predict") / "project"
    paths = build_embedded_project(root, downloaded_sample, {**SHRUNK, "embed.model": str(tiny_model_config)})
    for variant in ("linear", "random_frame"):
        assert train.main(["--root", str(root), variant]) == 0
    return paths


def printed_probabilities(output: str) -> dict[str, float]:
    lines = [line.split() for line in output.splitlines() if line.startswith("  ")]
    return {name: float(value) for name, value in lines}


def pipeline_probabilities(paths: ProjectPaths, variant: str, video_id: str) -> dict[str, float]:
    saved = load_model(paths.model_file(variant), variant)
    data = split_set(paths, "test")
    row = data.ids.index(video_id)
    frames, mask = variant_inputs(VARIANTS[variant], data.frames[row : row + 1], data.mask[row : row + 1], [video_id])
    return dict(zip(saved.categories, predict_proba(saved.model, frames, mask)[0].tolist(), strict=True))


def a_test_video(paths: ProjectPaths) -> tuple[str, str]:
    with paths.split_table.open(newline="", encoding="utf-8") as handle:
        row = next(r for r in csv.DictReader(handle) if r["split"] == "test")
    return row["id"], next(paths.videos_dir.glob(f"{row['id']}.*")).as_posix()


@pytest.mark.parametrize("variant", ["linear", "random_frame"])
def test_predict_a_stored_video_matches_the_pipeline(trained, capsys, variant):
    video_id, video = a_test_video(trained)
    assert predict.main(["--root", str(trained.root), video, "--variant", variant]) == 0
    out = capsys.readouterr().out
    printed = printed_probabilities(out)
    expected = pipeline_probabilities(trained, variant, video_id)
    assert set(printed) == set(expected)
    assert printed == pytest.approx(expected, abs=1e-4)
    assert f"category: {max(expected, key=expected.get)}" in out
    assert sum(printed.values()) == pytest.approx(1, abs=1e-3)


def test_predict_a_url_over_loopback_http(trained, capsys):
    video_id, video = a_test_video(trained)
    with serving({"/new.mp4": Video(open(video, "rb").read())}) as server:
        assert predict.main(["--root", str(trained.root), server.url("/new.mp4")]) == 0
    printed = printed_probabilities(capsys.readouterr().out)
    expected = pipeline_probabilities(trained, "linear", video_id)
    assert printed == pytest.approx(expected, abs=1e-4)
    assert np.isclose(sum(printed.values()), 1, atol=1e-3)


def test_bad_inputs_get_one_line(trained, tmp_path, capsys):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("not a video")
    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(b"not a video at all" * 100)
    _, video = a_test_video(trained)
    shutil.copyfile(video, tmp_path / "stored.mp4")
    playlist = tmp_path / "playlist.mp4"  # FFmpeg alone would read it as the video it names
    playlist.write_text("ffconcat version 1.0\nfile stored.mp4\n")
    cases = [
        ([str(tmp_path / "missing.mp4")], "missing.mp4: no such file or folder"),
        ([str(tmp_path / "empty")], f"{tmp_path / 'empty'}: no video file under it (expected .mp4, "),
        ([str(garbage)], "broken.mp4: unreadable video"),
        ([str(playlist)], "playlist.mp4: unreadable video (not a video: an ffconcat playlist that refers to other"),
        ([video, "--variant", "nonsense"], "unknown variant 'nonsense'"),
        ([video, "--model", str(tmp_path / "none.pt")], "none.pt: no such model file (--model)"),
        (
            [video, "--variant", "transformer"],
            "no trained model for variant 'transformer'; run `dvc repro train_transformer@transformer` first",
        ),
    ]
    for argv, message in cases:
        assert predict.main(["--root", str(trained.root), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err, err
        assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("changed", "named"),
    [
        ({"embed.seed": 7}, "embed.seed 42 (params.yaml now: 7)"),  # with embed.pretrained none: another random encoder
        ({"embed.precision": "bf16"}, "embed.precision 'fp32' (params.yaml now: 'bf16')"),
        ({"frames_count": 8}, "frames_count 4 (params.yaml now: 8)"),
        ({"frames.size": 96}, "frames.size 64 (params.yaml now: 96)"),
        ({"frames.mode": "keyframe"}, "frames.mode 'exact' (params.yaml now: 'keyframe')"),
    ],
)
def test_a_model_trained_on_other_embeddings_is_refused_naming_what_differs(
    trained, tiny_model_config, tmp_path, capsys, changed, named
):
    root = tmp_path / "project"
    shutil.copytree(trained.models_dir, root / "models")
    write_params(root, {**SHRUNK, "embed.model": str(tiny_model_config), **changed})
    _, video = a_test_video(trained)
    assert predict.main(["--root", str(root), video]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert named in err and err.endswith("run dvc repro first"), err
    assert "embed.model" not in err and "embed.pretrained" not in err  # only what differs is named


def test_a_relative_model_config_is_found_under_root(trained, tiny_model_config, tmp_path, capsys, monkeypatch):
    """embed.model: a .json path relative to the project (--root), not to the working directory."""
    root = tmp_path / "project"
    shutil.copytree(trained.models_dir, root / "models")
    (root / "configs").mkdir()
    shutil.copyfile(tiny_model_config, root / "configs" / tiny_model_config.name)
    write_params(root, {**SHRUNK, "embed.model": f"configs/{tiny_model_config.name}"})
    video_id, video = a_test_video(trained)
    monkeypatch.chdir(tmp_path)
    assert predict.main(["--root", str(root), video]) == 0
    printed = printed_probabilities(capsys.readouterr().out)
    assert printed == pytest.approx(pipeline_probabilities(trained, "linear", video_id), abs=1e-4)


def test_predict_a_folder_of_12_videos_writes_12_rows_and_reuses_the_cache(trained, tmp_path, capsys):
    """A nested folder with odd names, a truncated video and a text file: one row per video, the unreadable one
    with its status and reason; the sample's videos come from the per-video cache, not decoded or embedded again."""
    stored = sorted(trained.videos_dir.glob("*.mp4"))
    new = tmp_path / "new videos"
    for index, video in enumerate(stored[:11]):
        folder = new / f"part {index % 2}" / "été"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(video, folder / f"clip {index} ✓.mp4")
    truncated = new / "truncated.mp4"
    truncated.write_bytes(stored[0].read_bytes()[:2000])
    (new / "notes.txt").write_text("not a video")
    frames_before, embeddings_before = cache_entries(trained.root, "frames"), cache_entries(trained.root, "embeddings")
    out = tmp_path / "predictions.csv"
    assert predict.main(["--root", str(trained.root), str(new), "--out", str(out)]) == 0
    assert "11 of 12 videos classified (linear)" in capsys.readouterr().out
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12
    categories = load_model(trained.model_file("linear"), "linear").categories
    assert list(rows[0]) == ["path", "status", "reason", "predicted", "variant", *(f"p_{c}" for c in categories)]
    bad = next(row for row in rows if row["path"] == str(truncated))
    assert (bad["status"], bad["predicted"]) == ("error", "") and bad["reason"]
    for row in rows:
        if row is not bad:
            assert row["status"] == "ok" and row["variant"] == "linear" and row["predicted"] in categories
            assert sum(float(row[f"p_{c}"]) for c in categories) == pytest.approx(1, abs=1e-3)
    assert cache_entries(trained.root, "frames") == frames_before + 1  # only the truncated video's verdict
    assert cache_entries(trained.root, "embeddings") == embeddings_before
