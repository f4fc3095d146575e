"""Shared fixtures: shrunk projects under tmp_path, a tiny registered CLIP config, sample videos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from clipvideo.paths import ProjectPaths

REPO = Path(__file__).resolve().parents[1]

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
    "sample.min_duration_s": 2,
    "sample.max_duration_s": 4,
    "download.min_videos": 4,
    "frames.size": 64,
    "frames.min_videos": 4,
    "split.test_size": 0.34,
    "train.epochs": 5,
    "evaluate.bootstrap": 50,
}


def set_dotted(params: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[last] = value


def write_params(root: Path, overrides: dict[str, Any]) -> Path:
    """The repo's params.yaml with dotted-key overrides, written to root/params.yaml."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in overrides.items():
        set_dotted(params, key, value)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def tiny_model_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny-test-vit.json"
    path.write_text(json.dumps(TINY_MODEL_CONFIG))
    return path


@pytest.fixture
def shrunk_params(tiny_model_config: Path) -> dict[str, Any]:
    return {**SHRUNK, "embed.model": str(tiny_model_config)}


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
