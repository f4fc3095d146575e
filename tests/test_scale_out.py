"""Ray without a shared filesystem, and a cluster that does not answer, is stopped or dies: a verdict, not a hang.

The cluster of these tests is a head node without CPUs (so every task and actor runs elsewhere) and a second node
in a mount namespace of its own where the project checkout (but for the Python environment in it) and the tests'
temporary folders are empty: it sees neither the code nor the data, like a KubeRay pod or an autoscaled cloud
node without a shared filesystem.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clipvideo.core.paths import ProjectPaths
from stages import embed, frames
from tests.conftest import REPO, assert_same_outputs, cache_entries, write_params
from tests.test_engines import environment, run_both_stages
from tests.test_interruptions import leftovers, many_videos_project
from tools.ray_cluster import LocalCluster, can_hide_paths, local_cluster

pytestmark = pytest.mark.slow

# What a task on the second node sees of the driver's folders (the function travels by value with the script).
LOOK = """
import json, os, sys, ray
ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
@ray.remote(num_cpus=1)
def look(paths):
    return {path: sorted(os.listdir(path)) if os.path.isdir(path) else None for path in paths}
print(json.dumps(ray.get(look.remote(sys.argv[1:]))))
"""


@pytest.fixture(scope="module")
def isolated_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    if not can_hide_paths():
        if os.environ.get("CI"):
            pytest.fail("this machine cannot start a process in a mount namespace (unshare --mount)")
        pytest.skip("this machine cannot start a process in a mount namespace (unshare --mount)")
    hidden = (REPO, tmp_path_factory.getbasetemp())
    with local_cluster(nodes=2, cpus_per_node=2, head_cpus=0, hidden=hidden) as cluster:
        yield cluster
    assert cluster.processes() == {}


def test_frames_and_embed_on_a_node_that_cannot_read_the_project_write_the_local_bytes(
    project: ProjectPaths, tmp_path: Path, shrunk_params, isolated_cluster: LocalCluster
) -> None:
    """The reason this test exists: before workers got their code and inputs through Ray, the same run failed at
    once. With the code of 2e758fa (workers handed the driver's paths, the code found through the driver's
    sys.path), the frames stage on this cluster died at its first task with a traceback ending

        ray.exceptions.RaySystemError: System error: No module named 'clipvideo'
        ...
        ModuleNotFoundError: No module named 'clipvideo'

    (measured with this cluster: the second node cannot see the checkout, so it cannot import the project)."""
    looked = subprocess.run(
        [sys.executable, "-c", LOOK, str(REPO), str(project.root)],
        cwd=REPO,
        text=True,
        env=environment(isolated_cluster.address),
        capture_output=True,
        timeout=300,
    )
    assert looked.returncode == 0, looked.stderr[-3000:]
    python = Path(sys.prefix)  # the node has its own (./dev.sh's .venv in the checkout: kept, as on a real node)
    kept = [python.relative_to(REPO).parts[0]] if python.is_relative_to(REPO) else []
    assert json.loads(looked.stdout.strip().splitlines()[-1]) == {str(REPO): kept, str(project.root): None}

    write_params(project.root, shrunk_params)
    on_ray = tmp_path / "on-ray"
    shutil.copytree(project.root, on_ray)
    here = run_both_stages(project.root, ray_address=None)
    there = run_both_stages(on_ray, ray_address=isolated_cluster.address)
    assert "frames: 12 ok; 48 frames at 64px; 12 videos decoded, 0 reused from the cache; on Ray cluster" in there
    assert "(2 nodes, 2 CPUs, 0 GPUs), 1 CPU model replica x 2 threads" in there
    assert "on this host" in here
    assert_same_outputs(project.root, on_ray)
    assert leftovers(on_ray) == []


def test_a_cluster_that_does_not_answer_is_one_line_within_seconds(project: ProjectPaths, shrunk_params) -> None:
    write_params(project.root, shrunk_params)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "stages.frames", "--root", str(project.root)],
        cwd=REPO,
        text=True,
        env=environment("127.0.0.1:9"),
        capture_output=True,
        timeout=120,
    )
    seconds = time.monotonic() - started
    assert done.returncode == 2
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("frames: error: Ray cluster at 127.0.0.1:9: nothing answers there (Connection refused)")
    assert "unset RAY_ADDRESS" in error and "Traceback" not in done.stderr and "hashing" not in done.stderr
    print(f"verdict after {seconds:.1f} s")  # shown with -s; the issue asks for 30 s at most
    assert not project.frames_table.exists()


def start_frames(root: Path, address: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "stages.frames", "--root", str(root)],
        cwd=REPO,
        text=True,
        env=environment(address),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_for_entries(root: Path, process: subprocess.Popen, count: int) -> None:
    deadline = time.monotonic() + 300
    while cache_entries(root, "frames") < count:
        assert process.poll() is None, f"frames ended first:\n{process.communicate()[0][-3000:]}"
        assert time.monotonic() < deadline, "no video finished"
        time.sleep(0.02)


@pytest.fixture
def long_project(tmp_path: Path, downloaded_sample: Path, shrunk_params) -> ProjectPaths:
    """60 videos, 64 frames each: long enough to stop in the middle."""
    paths = many_videos_project(downloaded_sample, tmp_path / "long")
    write_params(paths.root, {**shrunk_params, "frames_count": 64, "frames.size": 96})
    return paths


def test_sigterm_stops_the_stage_and_its_ray_work_within_seconds_and_the_rerun_resumes(
    long_project: ProjectPaths, tmp_path: Path, isolated_cluster: LocalCluster
) -> None:
    reference = tmp_path / "reference"
    shutil.copytree(long_project.root, reference)
    assert frames.main(["--root", str(reference)]) == 0
    process = start_frames(long_project.root, isolated_cluster.address)
    wait_for_entries(long_project.root, process, 3)
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    output = process.communicate(timeout=60)[0]
    seconds = time.monotonic() - started
    assert seconds < 10, f"{seconds:.1f} s after SIGTERM:\n{output[-2000:]}"
    assert process.returncode == 130 and output.strip().splitlines()[-1].startswith("frames: stopped")
    finished = cache_entries(long_project.root, "frames")
    deadline = time.monotonic() + 30
    while isolated_cluster.processes_titled("ray::with_local_files") and time.monotonic() < deadline:
        time.sleep(0.2)  # the driver is gone: Ray ends its tasks
    assert isolated_cluster.processes_titled("ray::with_local_files") == []
    rerun = subprocess.run(
        [sys.executable, "-m", "stages.frames", "--root", str(long_project.root)],
        cwd=REPO,
        env=environment(None),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rerun.returncode == 0 and f"{finished} reused from the cache" in rerun.stdout
    assert_same_outputs(reference, long_project.root, folders=("frames",))


def test_a_cluster_whose_nodes_die_mid_run_gives_a_verdict_and_the_rerun_resumes(
    long_project: ProjectPaths, tmp_path: Path
) -> None:
    """A cluster of its own (this test kills it): the node that does the work goes away mid-run, the head (and the
    stage on it, the driver) stays. (When the head node itself dies, Ray ends the driver on it at once, with its
    own messages: finished videos are in the per-video cache all the same, and the rerun resumes.)"""
    reference = tmp_path / "reference"
    shutil.copytree(long_project.root, reference)
    assert frames.main(["--root", str(reference)]) == 0
    hidden = tmp_path / "hidden"  # any folder: the node lives in a mount namespace, which tells its processes apart
    hidden.mkdir()
    with local_cluster(nodes=2, cpus_per_node=1, head_cpus=0, hidden=(hidden,)) as cluster:
        process = start_frames(long_project.root, cluster.address)
        wait_for_entries(long_project.root, process, 3)
        cluster.stop_hidden_nodes()
        started = time.monotonic()
        output = process.communicate(timeout=180)[0]
        seconds = time.monotonic() - started
    assert process.returncode == 2, output[-3000:]
    verdict = output.strip().splitlines()[-1]
    assert verdict.startswith("frames: error: Ray cluster at ") and "finished videos are kept" in verdict
    print(f"verdict {seconds:.1f} s after the node died: {verdict}")
    finished = cache_entries(long_project.root, "frames")
    assert finished >= 3
    assert frames.main(["--root", str(long_project.root)]) == 0  # here, without the cluster
    assert_same_outputs(reference, long_project.root, folders=("frames",))
    assert embed.main(["--root", str(long_project.root)]) == 0
