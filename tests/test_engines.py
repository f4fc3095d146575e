"""Engines. Without RAY_ADDRESS nothing changes: the stages run here and never import Ray. With it, frames and
embed run on a real two-node Ray cluster started here (`ray start --head` and `ray start --address`: the second
node stands for another machine) and write the local engine's bytes, also when a Ray worker or the stage itself
is SIGKILLed mid-run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clipvideo.config.loading import load_settings
from clipvideo.config.schema import EngineSettings
from clipvideo.core.errors import ParamsError
from clipvideo.core.paths import ProjectPaths
from clipvideo.engines.factory import EngineChoice, choose_engine
from clipvideo.engines.ray_engine import FREED_AFTER_PERIODS, WAIT_S, StoredInputs, free_period_s
from stages import embed, frames
from tests.conftest import REPO, assert_same_outputs, cache_entries, write_params
from tests.test_interruptions import leftovers, many_videos_project
from tools.ray_cluster import LocalCluster, local_cluster

# Both stages in one fresh process, which then says whether anything imported Ray.
BOTH_STAGES = """
import sys
from stages import embed, frames
for stage in (frames, embed):
    if stage.main(["--root", sys.argv[1]]) != 0:
        sys.exit(1)
print("ray imported:", "ray" in sys.modules)
"""


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[LocalCluster]:
    """One cluster for this module (starting one takes seconds): a head and a second node, 2 CPUs each."""
    with local_cluster(nodes=2, cpus_per_node=2) as cluster:
        yield cluster
    assert cluster.processes() == {}  # no raylet, GCS or worker is left behind


def environment(ray_address: str | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    return env | {"RAY_ADDRESS": ray_address} if ray_address else env


def run_both_stages(root: Path, ray_address: str | None) -> str:
    command = [sys.executable, "-c", BOTH_STAGES, str(root)]
    done = subprocess.run(command, cwd=REPO, env=environment(ray_address), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def load_settings_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "settings.yaml").write_text(text)
        load_settings(Path(folder) / "settings.yaml")


def test_the_engine_comes_from_ray_address_then_the_settings():
    local, ray = EngineSettings(kind="local"), EngineSettings(kind="ray")
    assert choose_engine(local, environ={}) == EngineChoice("local")
    assert choose_engine(local, environ={"RAY_ADDRESS": " 10.0.0.5:6379 "}) == EngineChoice("ray", "10.0.0.5:6379")
    assert choose_engine(local, environ={"RAY_ADDRESS": "auto"}) == EngineChoice("ray", "auto")  # as Ray does
    on_head = EngineSettings(kind="ray", address="head:6379")
    assert choose_engine(on_head, environ={"RAY_ADDRESS": ""}) == EngineChoice("ray", "head:6379")
    assert choose_engine(ray, environ={}) == EngineChoice("ray", None)
    assert choose_engine(EngineSettings(kind="local", address="head:6379"), environ={}) == EngineChoice("local")
    with pytest.raises(ParamsError, match=r"^settings.yaml: engine.kind='spark': expected one of local, ray$"):
        load_settings_text("engine:\n  kind: spark\n")


def test_the_object_store_holds_at_most_twice_the_running_calls_inputs_however_short_the_calls() -> None:
    """A raylet frees a finished call's input up to about a second later: 1-minute videos, done in a fraction of a
    second, otherwise piled up to 2.8x what the running calls held (bench/engines.py)."""
    now = [0.0]
    FREED_WITHIN_S = 1.5  # Ray's default period of 1 s, FREED_AFTER_PERIODS times
    store = StoredInputs(most_calls=4, budget=100, freed_within_s=FREED_WITHIN_S, clock=lambda: now[0])
    assert store.admits(500)  # nothing held: a video larger than the budget goes alone
    for _ in range(4):
        assert store.admits(10)
        store.start(10)
    assert not store.admits(10)  # four calls held
    assert store.admits(0)  # a call without input bytes (an embed batch) always goes
    store.finish(10)
    now[0] += FREED_WITHIN_S / 2
    assert not store.admits(10) and store.until_freed() == pytest.approx(min(WAIT_S, FREED_WITHIN_S / 2))
    now[0] += FREED_WITHIN_S / 2
    assert store.admits(10)  # freed by now
    store.start(10)
    for _ in range(3):
        store.finish(10)
    assert not store.admits(10) and store.admits(0)  # one running, three not freed yet
    now[0] += FREED_WITHIN_S
    assert store.admits(90) and not store.admits(91)  # then the byte budget: 10 of 100 held by the running call


def test_the_free_period_is_read_as_ray_resolves_it() -> None:
    """The cluster's system config, else the RAY_ environment variable, else Ray's default of 1 s: the engine
    counts a finished call's input as held FREED_AFTER_PERIODS of it."""
    key = "free_objects_period_milliseconds"
    assert free_period_s({}, {}) == 1.0
    assert free_period_s({}, {f"RAY_{key}": "250"}) == 0.25
    assert free_period_s({key: 4000}, {f"RAY_{key}": "250"}) == 4.0
    assert free_period_s({key: -5}, {}) == 0.0
    assert free_period_s({}, {f"RAY_{key}": "soon"}) == 1.0
    assert FREED_AFTER_PERIODS * free_period_s({}, {}) == 1.5


def test_frames_and_embed_on_two_ray_nodes_write_the_local_bytes(
    project: ProjectPaths, tmp_path: Path, shrunk_params, ray_cluster: LocalCluster
):
    write_params(project.root, shrunk_params)
    on_ray = tmp_path / "on-ray"
    shutil.copytree(project.root, on_ray)

    here = run_both_stages(project.root, ray_address=None)
    assert "ray imported: False" in here  # a local run starts no Ray process: it never even imports Ray
    assert here.count("on this host") == 2

    there = run_both_stages(on_ray, ray_address=ray_cluster.address)
    cluster = "(2 nodes, 4 CPUs, 0 GPUs)"
    assert "frames: 12 ok; 48 frames at 64px; 12 videos decoded, 0 reused from the cache; on Ray cluster " in there
    assert cluster in there
    # 2 replicas of 2 CPUs each on nodes of 2 CPUs: one model replica ran on each node
    assert f"{cluster}, 2 CPU model replicas x 2 threads" in there
    assert_same_outputs(project.root, on_ray)
    assert leftovers(on_ray) == []


def wait_until(ready: Callable[[], bool], process: subprocess.Popen, what: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert process.poll() is None, f"the stage ended before {what}:\n{process.communicate()[0][-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def start_stage(stage: str, root: Path, ray_address: str) -> subprocess.Popen:
    command = [sys.executable, "-m", f"stages.{stage}", "--root", str(root)]
    env = environment(ray_address)
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_a_worker_mid_run(
    stage: str, root: Path, cluster: LocalCluster, title: str, finished: Callable[[], int]
) -> str:
    """Run the stage on the cluster; once 3 items are done, SIGKILL (by PID) a Ray worker busy with `title`
    (Ray titles a worker `ray::<task or actor.method>` while it runs one). The stage must still succeed."""
    process = start_stage(stage, root, cluster.address)
    busy: list[int] = []

    def found_busy() -> bool:  # the PID seen busy is the one killed: the title changes between calls
        busy[:] = cluster.processes_titled(title) if finished() >= 3 else []
        return bool(busy)

    wait_until(found_busy, process, f"a busy {title}")
    os.kill(busy[0], signal.SIGKILL)
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output[-3000:]
    return output


def test_a_killed_ray_worker_or_stage_loses_and_duplicates_no_video(
    tmp_path: Path, downloaded_sample: Path, shrunk_params, ray_cluster: LocalCluster
):
    killed = many_videos_project(downloaded_sample, tmp_path / "killed")  # 60 videos, 12 distinct pictures
    settings = {"frames_count": 64, "frames.size": 96}  # 12 frames files of up to 64 frames to embed: 9 batches
    write_params(killed.root, {**shrunk_params, **settings})
    reference = ProjectPaths(tmp_path / "reference")
    shutil.copytree(killed.root, reference.root)
    assert frames.main(["--root", str(reference.root)]) == 0
    assert embed.main(["--root", str(reference.root)]) == 0

    # frames: a worker dies while decoding; Ray runs its task again on another worker
    kill_a_worker_mid_run(
        "frames",
        killed.root,
        ray_cluster,
        "ray::with_local_files",
        lambda: cache_entries(killed.root, "frames"),
    )
    assert leftovers(killed.root) == []

    # embed: the stage itself dies; the rerun on the cluster reuses its finished videos, and then a model
    # replica dies mid-batch: Ray restarts it and runs its batches again
    def videos_done() -> int:
        return cache_entries(killed.root, "embeddings")

    stage = start_stage("embed", killed.root, ray_cluster.address)
    wait_until(lambda: videos_done() >= 2, stage, "2 finished videos")
    stage.send_signal(signal.SIGKILL)
    stage.wait()
    resumed = videos_done()
    assert 2 <= resumed < 12 and not killed.embeddings_dir.exists()
    rerun = kill_a_worker_mid_run("embed", killed.root, ray_cluster, "ray::ReplicaActor.run", videos_done)
    # at most what was left at the kill (a replica of the killed stage may have finished one more as it ended)
    embedded = int(re.search(r"(\d+) videos? embedded", rerun).group(1))
    assert 0 < embedded <= 12 - resumed

    assert_same_outputs(reference.root, killed.root)
    assert leftovers(killed.root) == []


def test_a_worker_that_imported_other_code_than_the_driver_refuses_to_run() -> None:
    """The project's code ships with the job, but a worker's own Python path could hold an older copy first."""
    from clipvideo.core.errors import PipelineError
    from clipvideo.engines.ray_engine import check_code, running_code

    check_code(running_code())
    with pytest.raises(PipelineError, match="which is not the code of the stage that started it"):
        check_code("0" * 64)


def test_a_worker_with_another_runtime_fingerprint_than_the_driver_refuses_in_one_line() -> None:
    """As for the code: a worker whose libraries (or device, precision path) differ would file other bytes under
    the driver's cache key, so it refuses, naming each difference."""
    from clipvideo.core.errors import PipelineError
    from clipvideo.engines.ray_engine import running_code, runtime_refusal, with_local_files
    from clipvideo.video.fingerprint import decoder_fingerprint

    driver = {"torch": "2.14.1", "device": "cpu", "cpu_capability": "AVX512"}
    assert runtime_refusal(dict(driver), driver) is None
    refusal = runtime_refusal({**driver, "torch": "2.13.0", "cpu_capability": "AVX2"}, driver)
    assert refusal is not None and "\n" not in str(refusal)
    assert "runs torch '2.13.0' (the stage: '2.14.1'), cpu_capability 'AVX2' (the stage: 'AVX512')" in str(refusal)
    assert "uv sync --locked" in str(refusal) and "ATEN_CPU_CAPABILITY" in str(refusal)

    here = decoder_fingerprint()
    assert with_local_files(len, running_code(), decoder_fingerprint, here, (), "four") == 4
    older = {**here, "av": "11.0.0"}
    with pytest.raises(PipelineError, match=r"runs av '.+' \(the stage: '11\.0\.0'\)"):
        with_local_files(len, running_code(), decoder_fingerprint, older, (), "four")
