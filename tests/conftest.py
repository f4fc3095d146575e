"""Shared fixtures: shrunk projects under tmp_path, a tiny registered CLIP config, sample videos."""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from clipvideo.config.loading import has_key
from clipvideo.config.schema import Settings
from clipvideo.config.variants import variants
from clipvideo.core.cache import cache_root
from clipvideo.core.paths import ProjectPaths

REPO = Path(__file__).resolve().parents[1]
VARIANTS = variants(REPO / "variants.yaml")

# A tiny open_clip model, registered the way open_clip registers its own JSON configs.
TINY_MODEL_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 1, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}

# Shrunk params: few, short videos, few frames, the tiny model. Tests override further.
SHRUNK = {
    "frames_count": 4,
    "sample.videos_per_category": 3,
    "sample.series_per_category": 0,  # tests/test_leakage.py renders a sample with series
    "sample.min_duration_s": 2,
    "sample.max_duration_s": 4,
    "download.min_videos": 4,
    "frames.size": 64,
    "frames.min_videos": 4,
    "split.test_size": 0.3,
    "split.val_size": 0.3,
    "split.seed": 2712,  # of the seeds, one that puts a video of each category on each side of these 12 videos
    "train.optim.epochs": 5,
    "evaluate.bootstrap": 50,
    "download.allow_private_networks": True,  # test videos are served from 127.0.0.1
}


# Modules that start real Ray clusters: one pytest-xdist worker runs them in turn (`--dist loadgroup`), so two
# clusters never share the machine's cores and object store memory at once.
RAY_CLUSTER_MODULES = {"test_engines.py", "test_scale_out.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in RAY_CLUSTER_MODULES:
            item.add_marker(pytest.mark.xdist_group("ray"))


def assert_same_outputs(left: Path, right: Path, folders: tuple[str, ...] = ("frames", "embeddings")) -> None:
    """data/frames.csv and every file of these data/ folders of two projects, byte for byte."""
    for folder in folders:
        names = sorted(p.name for p in (left / "data" / folder).iterdir())
        assert names == sorted(p.name for p in (right / "data" / folder).iterdir())
        _, mismatch, errors = filecmp.cmpfiles(left / "data" / folder, right / "data" / folder, names, shallow=False)
        assert (mismatch, errors) == ([], [])
    assert (left / "data" / "frames.csv").read_bytes() == (right / "data" / "frames.csv").read_bytes()


def cache_entries(root: Path, kind: str) -> int:
    """Entries of `kind` (frames, embeddings) in the per-video cache the project at `root` uses by default."""
    return len(list((cache_root(root, None) / kind).glob("*/*.json")))


def set_dotted(params: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[last] = value


def write_params(root: Path, overrides: dict[str, Any]) -> Path:
    """The repo's params.yaml and settings.yaml with dotted-key overrides, written under root, and its
    variants.yaml and reference.yaml unless root has them.

    Each override goes to the file that holds its key, so a test says `download.workers` or
    `frames_count` without caring which file that is. A model config or checkpoint given by absolute path (the
    session's tiny model) is copied into root/encoders/, the one folder the stages take model files from.
    """
    for key in ("embed.model", "embed.pretrained"):
        value = overrides.get(key)
        if isinstance(value, str) and Path(value).is_absolute() and Path(value).is_file():
            (root / "encoders").mkdir(exist_ok=True)
            shutil.copyfile(value, root / "encoders" / Path(value).name)
            overrides = {**overrides, key: f"encoders/{Path(value).name}"}
    files = {name: yaml.safe_load((REPO / name).read_text()) for name in ("params.yaml", "settings.yaml")}
    for key, value in overrides.items():
        set_dotted(files["settings.yaml" if "." in key and has_key(Settings, key) else "params.yaml"], key, value)
    for name, content in files.items():
        (root / name).write_text(yaml.safe_dump(content, sort_keys=False))
    for name in ("variants.yaml", "reference.yaml"):
        if not (root / name).exists():
            shutil.copyfile(REPO / name, root / name)
    return root / "params.yaml"


@pytest.fixture(scope="session")
def tiny_model_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny-test-vit.json"
    path.write_text(json.dumps(TINY_MODEL_CONFIG))
    return path


@pytest.fixture
def shrunk_params(tiny_model_config: Path) -> dict[str, Any]:
    return {**SHRUNK, "embed.model": str(tiny_model_config)}


@pytest.fixture(scope="session")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real 2-second H.264 MP4 (about 20 kB), for the loopback download tests."""
    from clipvideo.acquire.sample import render_sample_video

    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    render_sample_video(path, "testsrc=size=160x120:rate=10", 2, 10, False, 1)
    return path.read_bytes()


@pytest.fixture(scope="session")
def downloaded_sample(tmp_path_factory: pytest.TempPathFactory, tiny_model_config: Path) -> Path:
    """A project root after the real manifest and download stages on the shrunk sample (built once)."""
    from stages import download, manifest

    root = tmp_path_factory.mktemp("sample-project")
    write_params(root, {**SHRUNK, "embed.model": str(tiny_model_config)})
    assert manifest.main(["--root", str(root)]) == 0
    assert download.main(["--root", str(root)]) == 0
    return root


@pytest.fixture
def project(tmp_path: Path, downloaded_sample: Path) -> ProjectPaths:
    """A private copy of the downloaded sample project, safe to modify."""
    root = tmp_path / "project"
    shutil.copytree(downloaded_sample, root)
    return ProjectPaths(root)


def command_result(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a CLI (dvc, git) in `cwd`, as a user would, with a git identity (and `env` on top)."""
    env = {
        **os.environ,
        **(env or {}),
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def run_command(cmd: list[str], cwd: Path) -> str:
    """Run a CLI in `cwd`; fail the test with its output when it fails."""
    result = command_result(cmd, cwd)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{output[-4000:]}"
    return output


def refused_command(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a CLI in `cwd` that must fail; its output (what the user reads)."""
    result = command_result(cmd, cwd, env)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"{' '.join(cmd)} succeeded:\n{output[-4000:]}"
    return output


def stages_that_ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


OUTPUTS_AND_TOOLING = ("tests/", "metrics/", "reports/", "plots/", "bench/", ".dvc/")
GENERATED_BY_TESTS = ("dvc.lock", "params.yaml", "settings.yaml")  # write_params writes both files


def copy_project(dest: Path) -> None:
    """The project as it stands (tracked or new files), without tests, benchmarks, outputs or lock."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        if name.startswith(OUTPUTS_AND_TOOLING) or name in GENERATED_BY_TESTS:
            continue
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)


@pytest.fixture(scope="session")
def reproduced_repo(tmp_path_factory: pytest.TempPathFactory, tiny_model_config: Path) -> tuple[Path, str]:
    """A git + DVC repo of the project on shrunk params after one real `dvc repro`, committed (built once)."""
    root = tmp_path_factory.mktemp("dvc") / "repo"
    root.mkdir()
    copy_project(root)
    write_params(root, {**SHRUNK, "embed.model": str(tiny_model_config)})
    run_command(["git", "init", "-q"], root)
    run_command(["dvc", "init", "-q"], root)
    run_command(["dvc", "config", "core.analytics", "false"], root)
    shutil.copytree(REPO / ".dvc" / "plots", root / ".dvc" / "plots")  # the project's plot templates (dvc.yaml)
    output = run_command(["dvc", "repro"], root)
    run_command(["git", "add", "-A"], root)
    run_command(["git", "commit", "-qm", "baseline"], root)
    return root, output


@pytest.fixture
def dvc_repo(tmp_path: Path, reproduced_repo: tuple[Path, str]) -> Path:
    """A private copy of the reproduced repo (with its DVC cache), safe to change."""
    root = tmp_path / "repo"
    shutil.copytree(reproduced_repo[0], root, symlinks=True)
    return root


PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy may carry a test request off this machine."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def build_embedded_project(root: Path, downloaded_sample: Path, params: dict) -> ProjectPaths:
    """A copy of the downloaded sample after the real frames, embed, split and check_leakage stages."""
    shutil.copytree(downloaded_sample, root)
    write_params(root, params)
    args = ["--root", str(root)]
    from stages import check_leakage, embed, embed_text, frames, split

    assert frames.main(args) == 0
    assert embed.main(args) == 0
    assert embed_text.main(args) == 0
    assert split.main(args) == 0
    assert check_leakage.main(args) == 0
    return ProjectPaths(root)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, downloaded_sample, tiny_model_config) -> ProjectPaths:
    root = tmp_path_factory.mktemp("variants") / "project"
    return build_embedded_project(root, downloaded_sample, {**SHRUNK, "embed.model": str(tiny_model_config)})
