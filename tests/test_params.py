"""params.yaml validation: every key is checked before any work, in one line naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from clipvideo.config.loading import load_params, load_settings
from clipvideo.config.schema import Settings
from clipvideo.core.errors import ParamsError
from clipvideo.core.paths import ProjectPaths
from stages import embed, frames, manifest
from tests.conftest import REPO, write_params
from tools.generate import stale_files


def params_error(root: Path, overrides: dict[str, Any]) -> str:
    write_params(root, overrides)
    with pytest.raises(ParamsError) as caught:
        load_params(root / "params.yaml")
        load_settings(root / "settings.yaml")
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_repository_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.frames_count >= 1 and params.frames.mode in ("exact", "keyframe")


def test_the_committed_settings_file_holds_exactly_the_defaults():
    """settings.yaml documents every setting; a missing file or key must mean the very same values."""
    assert yaml.safe_load((REPO / "settings.yaml").read_text()) == Settings().model_dump()
    assert load_settings(REPO / "settings.yaml") == Settings()


def test_generated_files_are_the_ones_the_schemas_and_variants_generate():
    """docs/configuration.md, settings.yaml, dvc.yaml's variant stages and docs/models.md's table are generated from
    the one home of each fact (`python -m tools.generate`), never hand-edited."""
    assert [str(path.relative_to(REPO)) for path in stale_files(REPO)] == []


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("frames_count", 0, "params.yaml: frames_count=0: expected an integer in [1, 1000]"),
        ("frames_count", "abc", "params.yaml: frames_count='abc': expected an integer in [1, 1000]"),
        ("frames_count", 16.5, "params.yaml: frames_count=16.5: expected an integer"),
        ("frames_count", True, "params.yaml: frames_count=True: expected an integer"),
        ("split.test_size", 1.5, "params.yaml: split.test_size=1.5: expected a number in (0, 1)"),
        ("split.test_size", 0, "params.yaml: split.test_size=0: expected a number in (0, 1)"),
        ("train.optim.lr", "fast", "params.yaml: train.optim.lr='fast': expected a number in (0, 10]"),
        ("dataset.source", "kaggle", "params.yaml: dataset.source='kaggle': expected one of sample, youtube"),
        ("frames.mode", "nearest", "params.yaml: frames.mode='nearest': expected one of exact, keyframe"),
        ("embed.model", "", "params.yaml: embed.model='': expected a non-empty string"),
        ("dataset.categories", ["food", "food"], "params.yaml: dataset.categories=['food', 'food']: expected null or"),
        ("dataset.categories", ["food", "art music"], "params.yaml: dataset.categories=['food', 'art music']"),
        ("download.retry_unavailable", "no", "settings.yaml: download.retry_unavailable='no': expected true or false"),
        ("download.cookies", 5, "settings.yaml: download.cookies=5: expected null or a non-empty string"),
        ("frames.workers", 0, "settings.yaml: frames.workers=0: expected an integer in [1, 64]"),
        ("embed.device", "tpu", "settings.yaml: embed.device='tpu': expected one of auto, cpu, cuda"),
        ("frames_count", "9" * 5000, f"params.yaml: frames_count='{'9' * 59}...: expected an integer in [1, 1000]"),
        ("embed_text.prompts", ["a video"], "params.yaml: embed_text.prompts=['a video']: expected a list of 1 to"),
        ("embed_text.prompts", [], "params.yaml: embed_text.prompts=[]: expected a list of 1 to 64 distinct texts"),
        ("embed_text.prompts", ["a {category}", "a {category}"], "params.yaml: embed_text.prompts=['a {category}'"),
        ("embed_text.prompts", ["{category} {x}"], "params.yaml: embed_text.prompts=['{category} {x}']: expected"),
        ("embed_text.prompts", ["a {category"], "params.yaml: embed_text.prompts=['a {category']: expected"),
        ("embed_text.prompts", "a {category}", "params.yaml: embed_text.prompts='a {category}': expected a list"),
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
    assert message == (
        "params.yaml: unknown key frames.sizes; did you mean frames.size? "
        "frames takes size, mode, max_decode_megapixels, max_decode_megapixels_per_byte"
    )


def test_a_runtime_setting_in_params_yaml_is_an_unknown_key(tmp_path):
    """Workers, batch sizes and the like live in settings.yaml: in params.yaml they would make experiments."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["frames"]["workers"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError) as raised:
        load_params(tmp_path / "params.yaml")
    assert str(raised.value) == (
        "params.yaml: unknown key frames.workers; frames.workers is a setting: set it in settings.yaml, not here "
        "(frames takes size, mode, max_decode_megapixels, max_decode_megapixels_per_byte)"
    )


def test_a_param_in_settings_yaml_says_it_belongs_in_params_yaml(tmp_path):
    (tmp_path / "settings.yaml").write_text("frames_count: 32\n")
    with pytest.raises(ParamsError) as raised:
        load_settings(tmp_path / "settings.yaml")
    assert str(raised.value) == (
        "settings.yaml: unknown top-level key frames_count; frames_count is a DVC param: set it in params.yaml, not "
        "here (known keys: download, frames, embed, train, engine, cache)"
    )


def test_the_decode_budget_is_a_param_now_and_settings_yaml_says_so(tmp_path):
    """frames.max_decode_megapixels decides which videos are refused: a result, so a param of frames."""
    (tmp_path / "settings.yaml").write_text("frames:\n  max_decode_megapixels: 100\n")
    with pytest.raises(ParamsError) as raised:
        load_settings(tmp_path / "settings.yaml")
    assert str(raised.value).startswith(
        "settings.yaml: unknown key frames.max_decode_megapixels; frames.max_decode_megapixels is a DVC param: set it "
        "in params.yaml"
    )
    assert load_params(REPO / "params.yaml").frames.max_decode_megapixels == 1_000_000


def test_settings_file_is_optional_and_keys_default(tmp_path, monkeypatch):
    monkeypatch.delenv("CLIPVIDEO_SETTINGS", raising=False)
    assert load_settings(tmp_path / "settings.yaml") == Settings()
    (tmp_path / "settings.yaml").write_text("frames:\n  workers: 3\n")
    loaded = load_settings(tmp_path / "settings.yaml")
    assert loaded.frames == Settings().frames.model_copy(update={"workers": 3}) and loaded.download.workers == 2


def test_settings_env_names_another_file(tmp_path, monkeypatch):
    other = tmp_path / "cluster.yaml"
    other.write_text("frames:\n  workers: 7\n")
    monkeypatch.setenv("CLIPVIDEO_SETTINGS", str(other))
    assert load_settings(tmp_path / "settings.yaml").frames.workers == 7
    monkeypatch.setenv("CLIPVIDEO_SETTINGS", str(tmp_path / "missing.yaml"))
    with pytest.raises(ParamsError, match=r"^CLIPVIDEO_SETTINGS='.*missing.yaml': no such file$"):
        load_settings(tmp_path / "settings.yaml")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda path: path.mkdir(), "settings.yaml: a directory; expected a YAML file"),
        (lambda path: path.symlink_to("/dev/zero"), "settings.yaml: a link to /dev/zero, a character device; expected"),
        (
            lambda path: path.symlink_to("/nonexistent/x.yaml"),
            "settings.yaml: a link to /nonexistent/x.yaml, which does not exist; expected a YAML file",
        ),
    ],
)
def test_a_settings_path_that_is_no_file_says_what_it_is(tmp_path, monkeypatch, make, expected):
    """Only a settings.yaml that does not exist at all takes the defaults."""
    monkeypatch.delenv("CLIPVIDEO_SETTINGS", raising=False)
    make(tmp_path / "settings.yaml")
    with pytest.raises(ParamsError) as caught:
        load_settings(tmp_path / "settings.yaml")
    assert str(caught.value).startswith(expected)
    monkeypatch.setenv("CLIPVIDEO_SETTINGS", str(tmp_path))
    with pytest.raises(ParamsError, match=rf"^CLIPVIDEO_SETTINGS='{tmp_path}': a directory; expected a YAML file$"):
        load_settings(tmp_path / "settings.yaml")


def test_an_alias_bomb_is_refused_at_once_in_one_short_line(tmp_path):
    """Nine levels of aliases would expand to 10**9 items: refused before anything is expanded."""
    (tmp_path / "params.yaml").write_text(alias_bomb_params())
    with pytest.raises(ParamsError) as caught:
        load_params(tmp_path / "params.yaml")
    message = str(caught.value)
    assert "anchors and aliases" in message and message.startswith("params.yaml:") and len(message) < 200


def alias_bomb_params() -> str:
    """params.yaml with nine levels of aliases (10**9 items expanded): DVC's own YAML parser expands it."""
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    return (REPO / "params.yaml").read_text().replace("frames_count: 16", "frames_count: {" + ", ".join(levels) + "}")


CHECK = """
import sys
from clipvideo.cli.check import main
code = main(sys.argv[1:])
print(code, sorted(name for name in ("dvc", "torch", "av") if name in sys.modules))
"""


def test_the_check_command_refuses_an_alias_bomb_in_params_yaml_without_dvc(tmp_path):
    """What a pre-commit hook or CI runs before DVC ever parses a params.yaml from someone else."""
    write_params(tmp_path, {})
    (tmp_path / "params.yaml").write_text(alias_bomb_params())
    result = subprocess.run(
        [sys.executable, "-c", CHECK, "--root", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip().splitlines()[-1] == "2 []"  # refused, and neither DVC nor anything heavy loaded
    assert (
        result.stderr == "check: error: params.yaml:4: YAML anchors and aliases (& and *) are not allowed here; "
        "write each value out\n"
    )


def test_the_check_command_says_each_problem_in_one_line(tmp_path, monkeypatch, capsys):
    from clipvideo.cli.check import main

    monkeypatch.delenv("CLIPVIDEO_SETTINGS", raising=False)
    assert main(["--root", str(REPO)]) == 0
    assert capsys.readouterr().out.startswith("check: ")
    write_params(tmp_path, {"frames_count": 0})
    (tmp_path / "settings.yaml").unlink()
    (tmp_path / "settings.yaml").mkdir()
    (tmp_path / "variants.yaml").write_text("")
    assert main(["--root", str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "check: error: params.yaml: frames_count=0: expected an integer in [1, 1000]",
        "check: error: settings.yaml: a directory; expected a YAML file",
        "check: error: variants.yaml: empty; expected `variants:`, a mapping of variant names to their sections",
    ]


def test_a_byte_that_is_not_utf8_is_one_line_with_its_line(tmp_path):
    text = (REPO / "params.yaml").read_bytes().replace(b"seed: 42", b"seed: 4\xff2")
    (tmp_path / "params.yaml").write_bytes(text)
    line = text[: text.index(b"\xff")].count(b"\n") + 1
    with pytest.raises(ParamsError, match=rf"^params.yaml:{line}: byte 0xff is not UTF-8 text$"):
        load_params(tmp_path / "params.yaml")


def test_a_stage_given_a_non_utf8_params_file_prints_one_line(tmp_path, capsys):
    (tmp_path / "params.yaml").write_bytes(b"frames_count: \xfe\n")
    code, err = run_stage(manifest, tmp_path, capsys)
    assert code == 2 and err == "manifest: error: params.yaml:1: byte 0xfe is not UTF-8 text"


def test_unknown_key_in_a_nested_section_is_reported(tmp_path):
    assert params_error(tmp_path, {"train.mixup.beta": 0.4}).startswith("params.yaml: unknown key train.mixup.beta;")


def test_unknown_top_level_key_is_reported(tmp_path):
    assert params_error(tmp_path, {"frame_count": 16}).startswith(
        "params.yaml: unknown top-level key frame_count; did you mean frames_count? known keys: frames_count, dataset, "
    )


def test_missing_key_is_reported(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    del params["frames"]["mode"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=r"^params.yaml: missing key frames.mode$"):
        load_params(tmp_path / "params.yaml")


def test_key_given_twice_is_reported_with_its_line(tmp_path):
    text = (REPO / "params.yaml").read_text().replace("frames_count: 16\n", "frames_count: 16\nframes_count: 7\n", 1)
    (tmp_path / "params.yaml").write_text(text)
    line = text.splitlines().index("frames_count: 7") + 1
    with pytest.raises(ParamsError, match=rf"^params.yaml:{line}: key 'frames_count' is given twice$"):
        load_params(tmp_path / "params.yaml")


def test_invalid_yaml_is_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text("frames_count: [16\n")
    with pytest.raises(ParamsError) as caught:
        load_params(tmp_path / "params.yaml")
    assert "not valid YAML" in str(caught.value) and "\n" not in str(caught.value)


def run_stage(stage, root: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = stage.main(["--root", str(root)])
    return code, capsys.readouterr().err.strip()


def test_a_bad_key_anywhere_stops_the_first_stage_before_any_work(tmp_path, capsys):
    """A typo in `train` stops `dvc repro` at manifest, not after hours of downloading and decoding."""
    write_params(tmp_path, {"train.optim.lr": -1})
    code, err = run_stage(manifest, tmp_path, capsys)
    assert code == 2
    assert err == "manifest: error: params.yaml: train.optim.lr=-1: expected a number in (0, 10]"
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("value", [0, "abc"])
def test_frames_stage_with_bad_frames_count_writes_nothing(project: ProjectPaths, shrunk_params, capsys, value):
    write_params(project.root, {**shrunk_params, "frames_count": value})
    code, err = run_stage(frames, project.root, capsys)
    assert code == 2
    assert err == f"frames: error: params.yaml: frames_count={value!r}: expected an integer in [1, 1000]"
    assert not project.frames_dir.exists() and not project.frames_table.exists()
    assert not (project.root / ".clipvideo-cache").exists()  # nothing was decoded


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


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("embed.model", "{outside}/tiny.json"),
        ("embed.model", "models/tiny.json"),
        ("embed.pretrained", "ckpt.pt"),
        ("embed.pretrained", "{outside}/ckpt.pt"),
        ("embed.pretrained", "encoders/../ckpt.pt"),
    ],
)
@pytest.mark.parametrize("stage", ["check_params", "embed", "embed_text"])
def test_a_model_file_outside_encoders_is_refused_in_one_line_naming_the_fix(tmp_path, capsys, key, value, stage):
    """DVC tracks encoders/ (a dep of embed and embed_text), not a path a param names: a file elsewhere could be
    replaced without rerunning anything."""
    import importlib

    root, outside = tmp_path / "project", tmp_path / "elsewhere"
    for folder in (root / "models", root / "encoders", outside):
        folder.mkdir(parents=True)
    for path in (outside / "tiny.json", outside / "ckpt.pt", root / "models" / "tiny.json", root / "ckpt.pt"):
        path.write_text("{}")
    value = value.format(outside=outside)
    write_params(root, {})  # not with the key: write_params copies an absolute model file into encoders/
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["embed"][key.split(".")[1]] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    code, err = run_stage(importlib.import_module(f"stages.{stage}"), root, capsys)
    assert code == 2
    name = Path(value).name
    assert err == (
        f"{stage}: error: params.yaml: {key}={value!r}: a file outside the project's encoders/ folder, "
        f"which DVC does not track (replacing it would rerun nothing); copy it to encoders/ and set "
        f"{key}: encoders/{name}"
    )


def test_a_model_name_a_tag_or_a_file_under_encoders_passes_the_check(tmp_path) -> None:
    from clipvideo.config.encoders import check_encoder_files
    from clipvideo.config.schema import EmbedParams

    (tmp_path / "encoders").mkdir()
    for model, pretrained in [
        ("ViT-B-32", "openai"),
        ("ViT-B-32", "none"),
        ("encoders/x.json", "encoders/x.pt"),
        (str(tmp_path / "encoders" / "x.json"), "laion2b_s34b_b79k"),
    ]:
        check_encoder_files(EmbedParams(model=model, pretrained=pretrained, precision="fp32", seed=0), tmp_path)
