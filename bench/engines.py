"""Engines: frames + embed as `dvc repro` runs them (one process per stage) on generated 1-minute videos, with the
local engine, with a one-node Ray cluster on this machine through its object store (workers get every input
through Ray), and with the same cluster the way the code of BEFORE_OBJECT_STORE ran it (workers read the
videos and frames through the stage's own paths: a shared filesystem); wall and CPU seconds, best of the
repeats, and the object store's peak use as the raylets count it. Then the embed loop's throughput with fixed
forward batches of 64 filled across videos against each video alone in its own batches, at several
frames_count.

Each project uses the repo's params.yaml and settings.yaml (ViT-B-32 with seeded random weights, fp32, 16
frames), and a per-video cache of its own, emptied before every run. The Ray cluster is started here (`ray start
--head`, the machine's cores as its CPUs, workers at nice 0) and stopped at the end.

    python bench/engines.py --skip-batching                       # 14 minutes on 2 cores
    python bench/engines.py --skip-engines --repeat 1 --images 128  # 5 minutes
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from common import (
    REPO,
    bench_frames,
    bench_video,
    machine,
    revision_copy,
    table,
    timed,
    timed_run,
    video_row,
    write_videos,
)

from clipvideo.core.cache import cache_root
from clipvideo.core.ids import url_id
from clipvideo.core.system import available_cores
from clipvideo.embed.batches import Batch, plan_batches
from clipvideo.embed.embedder import BatchEmbedder, embed_here
from clipvideo.embed.encoder import load_encoder
from clipvideo.engines.ray_engine import TASKS_AHEAD_PER_CPU
from clipvideo.video.store import load_frame_jpegs
from tools.ray_cluster import LocalCluster, local_cluster

STAGES = ("frames", "embed")


class Sampling:
    """Calls `sample()` every `interval_s` in a thread while the block runs, and once more at its end."""

    interval_s = 0.1

    def sample(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Sampling:
        self.stop = threading.Event()
        self.sampler = threading.Thread(target=self.sample_until_stopped, daemon=True)
        self.sampler.start()
        return self

    def sample_until_stopped(self) -> None:
        while not self.stop.wait(self.interval_s):
            self.sample()

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.sampler.join()
        self.sample()


class ClusterCpu(Sampling):
    """CPU seconds the cluster's processes use while the block runs. Ray's worker processes come and go (a killed
    replica, an idle worker it retires), so their CPU time is sampled every 0.1 s rather than read at the end."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.start = cluster.cpu_ticks()
        self.last = dict(self.start)

    def sample(self) -> None:
        self.last.update(self.cluster.cpu_ticks())

    @property
    def seconds(self) -> float:
        ticks = sum(used - self.start.get(pid, 0) for pid, used in self.last.items())
        return ticks / os.sysconf("SC_CLK_TCK")


BEFORE_OBJECT_STORE = "2e758fa"  # the last code whose Ray workers read the stage's own paths


class ObjectStorePeak(Sampling):
    """The most bytes the cluster's object stores held at once while the block ran, as Ray counts them (every
    raylet's `object_store_bytes_used`, summed over the nodes, sampled every 0.02 s). It includes objects out of
    scope that the raylet has not freed yet: it frees them in batches, about once a second."""

    interval_s = 0.02

    def __init__(self, cluster: LocalCluster) -> None:
        from ray._raylet import GcsClient  # only here: the bench's other parts never start Ray's client

        nodes = GcsClient(address=cluster.address).get_all_node_info().values()
        self.raylets = [(node.node_manager_address, node.node_manager_port) for node in nodes if node.state == 0]
        self.peak = 0

    def sample(self) -> None:
        from ray._private.internal_api import node_stats

        used = sum(
            node_stats(address, port, include_memory_info=False).store_stats.object_store_bytes_used
            for address, port in self.raylets
        )
        self.peak = max(self.peak, used)


def run_stage(stage: str, root: Path, code: Path, cluster: LocalCluster | None = None) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, its summary line) of `python -m stages.<stage>` of the code in `code`, started as
    DVC starts it; on `cluster` (RAY_ADDRESS) the CPU seconds include the cluster's processes (workers, replicas,
    raylet, GCS) during the run.

    CPU seconds hardly move with load from other jobs, which stretches wall times on a shared machine. The
    project's per-video cache is emptied first: every run does all the work."""
    shutil.rmtree(cache_root(root, None), ignore_errors=True)
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    if cluster:
        env["RAY_ADDRESS"] = cluster.address
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = [sys.executable, "-m", f"stages.{stage}", "--root", str(root)]
    with contextlib.ExitStack() as stack:
        ray_cpu = stack.enter_context(ClusterCpu(cluster)) if cluster else None
        wall, stdout, _ = timed_run(command, code, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    return wall, cpu + (ray_cpu.seconds if ray_cpu else 0.0), stdout.strip().splitlines()[-1]


def minute_videos_project(root: Path, count: int) -> Path:
    """`count` generated 1-minute 640x360 videos, each its own pictures, as the download stage lists them."""
    videos = root / "data" / "videos"
    videos.mkdir(parents=True)
    for name in ("params.yaml", "settings.yaml"):
        shutil.copyfile(REPO / name, root / name)
    rows = []
    for index in range(count):
        source = bench_video(1, variant=index + 1)
        video_id = url_id(f"bench/minute/{index}")
        os.link(source, videos / f"{video_id}.mp4")
        rows.append(video_row(root, videos / f"{video_id}.mp4", "food", 60.0))
    write_videos(root, rows)
    return root


def the_same_project(source: Path, root: Path, code: Path) -> Path:
    """`source`'s videos (hard links) with the params and settings files of the code in `code`."""
    shutil.copytree(source / "data" / "videos", root / "data" / "videos", copy_function=os.link)
    shutil.copyfile(source / "data" / "videos.csv", root / "data" / "videos.csv")
    for name in ("params.yaml", "settings.yaml"):
        shutil.copyfile(code / name, root / name)
    return root


def engine_rows(root: Path, before: Path, cluster: LocalCluster, repeat: int) -> list[list[str]]:
    """Best of `repeat` per engine and stage, the engines interleaved (load from other jobs hits them alike); then
    one more run of each stage per Ray engine with the object store sampled, apart, so sampling costs no timing."""
    old_root = the_same_project(root, root.with_name(root.name + "-before"), before)
    engines = {
        "local": (root, REPO, None),
        "Ray, object store": (root, REPO, cluster),
        f"Ray, shared filesystem ({BEFORE_OBJECT_STORE})": (old_root, before, cluster),
    }
    wall = {engine: dict.fromkeys(STAGES, math.inf) for engine in engines}
    cpu = {engine: dict.fromkeys(STAGES, math.inf) for engine in engines}
    for _ in range(repeat):
        for engine, (project, code, on) in engines.items():
            for stage in STAGES:
                seconds, cpu_seconds, summary = run_stage(stage, project, code, on)
                wall[engine][stage] = min(wall[engine][stage], seconds)
                cpu[engine][stage] = min(cpu[engine][stage], cpu_seconds)
                print(f"  {engine}: {summary[:200]}", file=sys.stderr, flush=True)
    peaks = {}
    for engine, (project, code, on) in engines.items():
        for stage in STAGES if on else ():
            time.sleep(2)  # the raylet frees the last run's objects in batches, about once a second
            with ObjectStorePeak(on) as store:
                run_stage(stage, project, code, on)
            peaks[engine] = max(peaks.get(engine, 0), store.peak)
    local_wall, local_cpu = sum(wall["local"].values()), sum(cpu["local"].values())
    rows = []
    for engine in engines:
        total_wall, total_cpu = sum(wall[engine].values()), sum(cpu[engine].values())
        peak = f"{peaks[engine] / 1e6:.0f}" if engine in peaks else "-"
        rows.append(
            [
                engine,
                f"{wall[engine]['frames']:.1f}",
                f"{wall[engine]['embed']:.1f}",
                f"{total_wall:.1f}",
                f"{total_wall / local_wall:.2f}x",
                f"{total_cpu:.1f}",
                f"{total_cpu / local_cpu:.2f}x",
                peak,
            ]
        )
    return rows


def per_video_batches(jpegs: list[list[bytes]]) -> Iterator[Batch]:
    """Each video in batches of its own, the last one of each padded: what batches cut per video cost."""
    for frames in jpegs:
        yield from plan_batches([len(frames)], lambda _, frames=frames: frames)


def across_videos(jpegs: list[list[bytes]]) -> Iterator[Batch]:
    return plan_batches([len(frames) for frames in jpegs], lambda i: jpegs[i])


def batching_rows(frames_counts: list[int], images: int, work: Path, repeat: int) -> list[list[str]]:
    """Images/s of the embed loop (decode, forward in fixed batches) with both ways of filling the batches."""
    encoder = load_encoder("ViT-B-32", "none", seed=42)
    rows = []
    for count in frames_counts:
        bench_frames(work / "video.npz", count)
        jpegs = [load_frame_jpegs(work / "video.npz")] * math.ceil(images / count)
        total = count * len(jpegs)
        rates = {}
        for label, batches in (("per video", per_video_batches), ("across videos", across_videos)):
            forwards = sum(1 for _ in batches(jpegs))

            def embed_all(batches=batches, jpegs=jpegs) -> None:
                for _ in embed_here(batches(jpegs), BatchEmbedder(encoder)):
                    pass

            wall = cpu = math.inf
            for _ in range(repeat):
                started_cpu = time.process_time()  # every thread of this process: the forward's and the prefetch's
                wall = min(wall, timed(embed_all))
                cpu = min(cpu, time.process_time() - started_cpu)
            rates[label] = (total / wall, total / cpu, forwards)
            print(f"  done: frames_count {count}, {label}", file=sys.stderr, flush=True)
        (per, per_cpu, per_forwards), (across, across_cpu, across_forwards) = rates["per video"], rates["across videos"]
        rows.append(
            [
                count,
                len(jpegs),
                per_forwards,
                f"{per:.1f}",
                f"{per_cpu:.1f}",
                across_forwards,
                f"{across:.1f}",
                f"{across_cpu:.1f}",
                f"{across / per:.2f}x",
                f"{across_cpu / per_cpu:.2f}x",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=64, help="generated 1-minute videos (default 64)")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs of each (default 3)")
    parser.add_argument("--skip-engines", action="store_true", help="only the batching table")
    parser.add_argument("--skip-batching", action="store_true", help="only the engines table")
    parser.add_argument("--images", type=int, default=256, help="batching: about this many images per row")
    args = parser.parse_args()
    print(f"machine: {machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    with tempfile.TemporaryDirectory(prefix="clipvideo-engines-") as scratch:
        work = Path(scratch)
        if not args.skip_engines:
            before = revision_copy(BEFORE_OBJECT_STORE, work / "before")
            minute = minute_videos_project(work / "minute", args.videos)
            largest = max(path.stat().st_size for path in (minute / "data" / "videos").iterdir())
            cpus = available_cores()
            with local_cluster(nodes=1, cpus_per_node=cpus, worker_niceness=0) as cluster:
                rows = engine_rows(minute, before, cluster, args.repeat)
            print(f"frames + embed on {args.videos} x 1-min videos, one process per stage (best of {args.repeat}):\n")
            headers = [
                "engine",
                "frames s",
                "embed s",
                "total s",
                "vs local",
                "CPU s",
                "CPU vs local",
                "object store peak MB",
            ]
            print(table(headers, rows))
            bound = cpus * TASKS_AHEAD_PER_CPU * largest
            print(
                f"\nthe bound: cluster CPUs x in-flight tasks per CPU x largest video = {cpus} x "
                f"{TASKS_AHEAD_PER_CPU} x {largest / 1e6:.1f} MB = {bound / 1e6:.0f} MB"
            )
        if not args.skip_batching:
            (work / "batching").mkdir()
            rows = batching_rows([4, 16, 100], args.images, work / "batching", args.repeat)
            print(f"\nembed loop, ViT-B-32 fp32, forward batches of 64, images/s (best of {args.repeat}):\n")
            headers = [
                "frames_count",
                "videos",
                "per video: forwards",
                "img/s",
                "img/CPU-s",
                "across videos: forwards",
                "img/s",
                "img/CPU-s",
                "speedup",
                "speedup (CPU)",
            ]
            print(table(headers, rows))
    print(f"\nmachine after: {machine()}")
    print("rerun: python bench/engines.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
