"""params.yaml validation: every key is checked before any work, in one line naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from clipvideo.errors import ParamsError
from clipvideo.params import SCHEMA, load_params
from clipvideo.paths import ProjectPaths
from stages import embed, frames, manifest
from tests.conftest import REPO, write_params

ALL_SECTIONS = tuple(SCHEMA)


def params_error(root: Path, overrides: dict[str, Any]) -> str:
    write_params(root, overrides)
    with pytest.raises(ParamsError) as caught:
        load_params(root / "params.yaml", ALL_SECTIONS)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_repository_params_are_valid():
    params = load_params(REPO / "params.yaml", ALL_SECTIONS)
    assert params["frames_count"] >= 1 and params["frames"]["mode"] in ("exact", "keyframe")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("frames_count", 0, "params.yaml: frames_count=0: expected an integer in [1, 1000]"),
        ("frames_count", "abc", "params.yaml: frames_count='abc': expected an integer in [1, 1000]"),
        ("frames_count", 16.5, "params.yaml: frames_count=16.5: expected an integer"),
        ("frames_count", True, "params.yaml: frames_count=True: expected an integer"),
        ("split.test_size", 1.5, "params.yaml: split.test_size=1.5: expected a number in (0, 1)"),
        ("split.test_size", 0, "params.yaml: split.test_size=0: expected a number in (0, 1)"),
        ("train.lr", "fast", "params.yaml: train.lr='fast': expected a number in (0, 10]"),
        ("dataset.source", "kaggle", "params.yaml: dataset.source='kaggle': expected one of sample, youtube"),
        ("frames.mode", "nearest", "params.yaml: frames.mode='nearest': expected one of exact, keyframe"),
        ("embed.model", "", "params.yaml: embed.model='': expected a non-empty string"),
        ("dataset.categories", ["food", "food"], "params.yaml: dataset.categories=['food', 'food']: expected a list"),
        ("dataset.categories", ["food", "art music"], "params.yaml: dataset.categories=['food', 'art music']"),
        ("download.retry_unavailable", "yes", "params.yaml: download.retry_unavailable='yes': expected true or false"),
        ("download.cookies", 5, "params.yaml: download.cookies=5: expected null or a non-empty string"),
        ("embed.prompt", "a video", "params.yaml: embed.prompt='a video': expected text with {category}"),
        ("train.transformer.dropout", 1.0, "params.yaml: train.transformer.dropout=1.0: expected a number in [0, 1)"),
        ("frames", 5, "params.yaml: frames=5: expected a section with keys size, mode"),
        (
            "sample.min_duration_s",
            30,
            "params.yaml: sample.min_duration_s=30.0: expected at most sample.max_duration_s",
        ),
    ],
)
def test_bad_value_is_one_line_naming_key_value_and_what_is_allowed(tmp_path, key, value, expected):
    assert params_error(tmp_path, {key: value}).startswith(expected)


def test_unknown_key_in_a_section_is_reported_not_ignored(tmp_path):
    message = params_error(tmp_path, {"frames.sizes": 224})
    assert message == "params.yaml: unknown key frames.sizes; frames takes size, mode, min_videos, workers"


def test_unknown_key_in_a_nested_section_is_reported(tmp_path):
    assert params_error(tmp_path, {"train.mixup.beta": 0.4}).startswith("params.yaml: unknown key train.mixup.beta;")


def test_unknown_top_level_key_is_reported(tmp_path):
    assert params_error(tmp_path, {"frame_count": 16}).startswith("params.yaml: unknown top-level key frame_count;")


def test_missing_key_is_reported(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    del params["frames"]["mode"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=r"^params.yaml: missing key frames.mode$"):
        load_params(tmp_path / "params.yaml", ALL_SECTIONS)


def test_key_given_twice_is_reported_with_its_line(tmp_path):
    text = (REPO / "params.yaml").read_text().replace("seed: 42\n", "seed: 42\nseed: 7\n", 1)
    (tmp_path / "params.yaml").write_text(text)
    line = text.splitlines().index("seed: 7") + 1
    with pytest.raises(ParamsError, match=rf"^params.yaml:{line}: key 'seed' is given twice$"):
        load_params(tmp_path / "params.yaml", ALL_SECTIONS)


def test_invalid_yaml_is_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text("frames_count: [16\n")
    with pytest.raises(ParamsError) as caught:
        load_params(tmp_path / "params.yaml", ALL_SECTIONS)
    assert "not valid YAML" in str(caught.value) and "\n" not in str(caught.value)


def run_stage(stage, root: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = stage.main(["--root", str(root)])
    return code, capsys.readouterr().err.strip()


def test_a_bad_key_anywhere_stops_the_first_stage_before_any_work(tmp_path, capsys):
    """A typo in `train` stops `dvc repro` at manifest, not after hours of downloading and decoding."""
    write_params(tmp_path, {"train.lr": -1})
    code, err = run_stage(manifest, tmp_path, capsys)
    assert code == 2
    assert err == "manifest: error: params.yaml: train.lr=-1: expected a number in (0, 10]"
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("value", [0, "abc"])
def test_frames_stage_with_bad_frames_count_writes_nothing(project: ProjectPaths, shrunk_params, capsys, value):
    write_params(project.root, {**shrunk_params, "frames_count": value})
    code, err = run_stage(frames, project.root, capsys)
    assert code == 2
    assert err == f"frames: error: params.yaml: frames_count={value!r}: expected an integer in [1, 1000]"
    assert not project.frames_dir.exists() and not project.frames_table.exists()
    assert not project.frames_resume_dir.exists()


def test_embed_stage_with_unknown_model_writes_nothing(project: ProjectPaths, shrunk_params, capsys):
    write_params(project.root, shrunk_params)
    assert frames.main(["--root", str(project.root)]) == 0
    capsys.readouterr()
    write_params(project.root, {**shrunk_params, "embed.model": "ViT-Nonexistent-99"})
    code, err = run_stage(embed, project.root, capsys)
    assert code == 2
    assert err.startswith("embed: error: params.yaml: embed.model='ViT-Nonexistent-99': expected an open_clip model")
    assert "\n" not in err
    assert not project.embeddings_dir.exists()
