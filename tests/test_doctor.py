"""The environment check: `python -m clipvideo doctor`, and check_params stopping a fresh clone's first run before any
work when torchvision does not match torch (simulated: a torchvision that fails to import as a mismatched one does)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clipvideo.cli.doctor import installed, matching_torchvision, torch_fix
from tests.conftest import REPO, refused_command, run_command, stages_that_ran

MISMATCH = "operator torchvision::nms does not exist"  # what torchvision built for another torch raises on import


@pytest.fixture
def broken_torchvision(tmp_path: Path) -> dict[str, str]:
    """PYTHONPATH with a `torchvision` ahead of the installed one that raises what a mismatched build raises."""
    package = tmp_path / "shadow" / "torchvision"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"raise RuntimeError({MISMATCH!r})\n")
    return {"PYTHONPATH": str(package.parent)}


def expected_fix() -> str:
    """The command the check must name for this machine's torch (the installed torchvision is the matching one)."""
    return torch_fix(installed("torch"), installed("torchvision"))


@pytest.mark.parametrize(
    ("torch_version", "torchvision_version", "fix"),
    [
        ("2.14.1", "0.28.0", "uv sync --locked --extra dev --reinstall-package torch --reinstall-package torchvision"),
        (
            "2.14.1+cpu",
            "0.28.0+cpu",
            "uv pip install torch==2.14.1+cpu torchvision==0.29.1+cpu --index-url https://download.pytorch.org/whl/cpu",
        ),
        (
            "2.14.1+cpu",
            "0.29.1+cpu",
            "uv pip install --reinstall --no-deps torch==2.14.1+cpu torchvision==0.29.1+cpu "
            "--index-url https://download.pytorch.org/whl/cpu",
        ),
        (
            "2.14.1+cu130",
            "0.29.2+cu132",
            "uv sync --locked --extra dev --reinstall-package torch --reinstall-package torchvision",
        ),
        (None, None, "uv sync --locked --extra dev --reinstall-package torch --reinstall-package torchvision"),
    ],
)
def test_the_fix_puts_back_the_locked_builds_or_the_torchvision_built_for_a_cpu_torch(
    torch_version: str | None, torchvision_version: str | None, fix: str
) -> None:
    assert torch_fix(torch_version, torchvision_version) == fix
    assert matching_torchvision("2.14.1") == "0.29.1" and matching_torchvision("3.0.0") is None


def test_doctor_finds_a_working_environment_here() -> None:
    result = subprocess.run([sys.executable, "-m", "clipvideo", "doctor"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[1] for line in lines] == ["torch", "torchvision", "av", "open_clip", "ffmpeg"]
    assert all(line.startswith("ok    ") for line in lines)


def test_doctor_names_the_fix_for_a_torchvision_that_does_not_match(broken_torchvision: dict) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "clipvideo", "doctor"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **broken_torchvision},
    )
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert failed[0] == (
        f"FAIL  torchvision {installed('torchvision')} does not work with torch {installed('torch')} "
        f"(RuntimeError: {MISMATCH}); fix: {expected_fix()}"
    )
    assert failed[1] == "FAIL  open_clip needs torchvision (above)"  # it imports torchvision
    assert "ok    av " in result.stdout and "ok    ffmpeg " in result.stdout


def test_doctor_reports_a_broken_torch_once_and_what_needs_it(tmp_path: Path) -> None:
    package = tmp_path / "shadow" / "torch"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('libtorch_cpu.so: cannot open shared object file')\n")
    result = subprocess.run(
        [sys.executable, "-m", "clipvideo", "doctor"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(package.parent)},
    )
    assert result.returncode == 1
    assert [line for line in result.stdout.splitlines() if line.startswith("FAIL")] == [
        f"FAIL  torch {installed('torch')} does not import (ImportError: libtorch_cpu.so: cannot open shared object "
        f"file); fix: {expected_fix()}",
        "FAIL  torchvision needs torch (above)",
        "FAIL  open_clip needs torch and torchvision (above)",
    ]


@pytest.mark.slow
def test_a_fresh_clone_with_a_broken_torchvision_stops_at_check_params_with_the_fix(
    reproduced_repo: tuple[Path, str], tmp_path: Path, broken_torchvision: dict
) -> None:
    """A fresh clone has no data and no DVC cache: its first `dvc repro` runs check_params first, which stops it."""
    clone = tmp_path / "clone"
    run_command(["git", "clone", "-q", str(reproduced_repo[0]), str(clone)], tmp_path)
    output = refused_command(["dvc", "repro"], clone, broken_torchvision)
    assert stages_that_ran(output) == {"check_params"}  # manifest, embed...: never started
    assert (
        f"check_params: error: environment: torchvision {installed('torchvision')} does not work with torch "
        f"{installed('torch')} (RuntimeError: {MISMATCH}); fix: {expected_fix()}\n"
    ) in output
    assert "Traceback" not in output
