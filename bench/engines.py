"""Engines: frames + embed as `dvc repro` runs them (one process per stage) with the local engine against a
one-node Ray cluster on this machine (RAY_ADDRESS set), on the default sample and on generated 1-minute videos;
then the embed loop's throughput with forward batches that fill embed.batch_size across videos against batches
cut per video (the old loop), at several frames_count.

Each project uses the repo's params.yaml and settings.yaml (ViT-B-32 with seeded random weights, fp32, 16
frames, batch 64). The Ray cluster is started here (`ray start --head`, the machine's cores as its CPUs) and
stopped at the end.

    python bench/engines.py                              # about 30 minutes on 2 cores
    python bench/engines.py --videos 16 --repeat 1 --skip-batching
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from common import REPO, bench_video, machine, table, timed

from clipvideo.core.contracts import VIDEOS_COLUMNS
from clipvideo.core.ids import url_id
from clipvideo.core.system import available_cores
from clipvideo.core.tables import write_table
from clipvideo.embed.batches import BatchPlan, Segment, plan_batches
from clipvideo.embed.embedder import BatchEmbedder, embed_here
from clipvideo.embed.encoder import load_encoder
from clipvideo.video.decode import sample_frames
from clipvideo.video.store import save_frames
from tools.ray_cluster import LocalCluster, local_cluster

STAGES = ("frames", "embed")


class ClusterCpu:
    """CPU seconds the cluster's processes use while the block runs. Ray's worker processes come and go (a killed
    replica, an idle worker it retires), so their CPU time is sampled every 0.1 s rather than read at the end."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.seconds = 0.0

    def __enter__(self) -> ClusterCpu:
        self.start = self.cluster.cpu_ticks()
        self.last = dict(self.start)
        self.stop = threading.Event()
        self.sampler = threading.Thread(target=self.sample, daemon=True)
        self.sampler.start()
        return self

    def sample(self) -> None:
        while not self.stop.wait(0.1):
            self.last.update(self.cluster.cpu_ticks())

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.sampler.join()
        self.last.update(self.cluster.cpu_ticks())
        ticks = sum(used - self.start.get(pid, 0) for pid, used in self.last.items())
        self.seconds = ticks / os.sysconf("SC_CLK_TCK")


def run_stage(stage: str, root: Path, cluster: LocalCluster | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of `python -m stages.<stage>` started as DVC starts it; on `cluster` (RAY_ADDRESS)
    the CPU seconds include the cluster's processes (workers, replicas, raylet, GCS) during the run.

    CPU seconds hardly move with load from other jobs, which stretches wall times on a shared machine."""
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    if cluster:
        env["RAY_ADDRESS"] = cluster.address
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = [sys.executable, "-m", f"stages.{stage}", "--root", str(root)]
    with contextlib.ExitStack() as stack:
        ray_cpu = stack.enter_context(ClusterCpu(cluster)) if cluster else None
        started = time.perf_counter()
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"stages.{stage} failed in {root}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    return wall, cpu + (ray_cpu.seconds if ray_cpu else 0.0)


def sample_project(root: Path) -> Path:
    """The default offline sample after the real manifest and download stages."""
    root.mkdir(parents=True)
    for name in ("params.yaml", "settings.yaml"):
        shutil.copyfile(REPO / name, root / name)
    for stage in ("manifest", "download"):
        run_stage(stage, root)
    return root


def minute_videos_project(root: Path, count: int) -> Path:
    """`count` generated 1-minute 640x360 videos (hard links of one cached file) as the download stage lists them."""
    videos = root / "data" / "videos"
    videos.mkdir(parents=True)
    for name in ("params.yaml", "settings.yaml"):
        shutil.copyfile(REPO / name, root / name)
    source = bench_video(1)
    rows = []
    for index in range(count):
        video_id = url_id(f"bench/minute/{index}")
        os.link(source, videos / f"{video_id}.mp4")
        rows.append({
            "id": video_id, "category": "food", "status": "ok", "reason": "", "path": f"data/videos/{video_id}.mp4",
            "bytes": source.stat().st_size, "duration_s": 60.0,
        })  # fmt: skip
    write_table(root / "data" / "videos.csv", VIDEOS_COLUMNS, rows)
    return root


def engine_rows(name: str, root: Path, cluster: LocalCluster, repeat: int) -> list[list[str]]:
    """Best of `repeat` per engine and stage, the engines interleaved (load from other jobs hits both alike)."""
    wall = {engine: dict.fromkeys(STAGES, math.inf) for engine in ("local", "ray")}
    cpu = {engine: dict.fromkeys(STAGES, math.inf) for engine in ("local", "ray")}
    for _ in range(repeat):
        for engine, on in (("local", None), ("ray", cluster)):
            for stage in STAGES:
                seconds, cpu_seconds = run_stage(stage, root, on)
                wall[engine][stage] = min(wall[engine][stage], seconds)
                cpu[engine][stage] = min(cpu[engine][stage], cpu_seconds)
            print(f"  done: {name}, {engine}", file=sys.stderr, flush=True)
    local_wall, local_cpu = sum(wall["local"].values()), sum(cpu["local"].values())
    rows = []
    for engine, label in (("local", "local"), ("ray", "Ray, 1 node, workers at nice 0")):
        total_wall, total_cpu = sum(wall[engine].values()), sum(cpu[engine].values())
        rows.append([
            name, label, f"{wall[engine]['frames']:.1f}", f"{wall[engine]['embed']:.1f}", f"{total_wall:.1f}",
            f"{total_wall / local_wall:.2f}x", f"{total_cpu:.1f}", f"{total_cpu / local_cpu:.2f}x",
        ])  # fmt: skip
    return rows


def per_video_plans(videos: list[tuple[str, Path]], n_frames: list[int], batch_size: int) -> Iterator[BatchPlan]:
    """The old loop's batches: each video's frames in pieces of at most `batch_size`, never mixed."""
    index = 0
    for row, ((video_id, path), count) in enumerate(zip(videos, n_frames, strict=True)):
        for first in range(0, count, batch_size):
            segment = Segment(row, video_id, path.absolute(), count, first, min(count, first + batch_size))
            yield BatchPlan(index, (segment,))
            index += 1


def batching_rows(frames_counts: list[int], images: int, batch: int, work: Path, repeat: int) -> list[list[str]]:
    """Images/s of the embed loop (read, decode, forward, save per batch) with both ways of cutting batches."""
    encoder = load_encoder("ViT-B-32", "none", seed=42)
    rows = []
    for count in frames_counts:
        sampled = sample_frames(bench_video(1), count, 224)
        save_frames(work / "video.npz", sampled)
        videos = []
        for index in range(math.ceil(images / count)):
            path = work / f"{index:016x}.npz"
            shutil.copyfile(work / "video.npz", path)
            videos.append((path.stem, path))
        n_frames = [count] * len(videos)
        total = count * len(videos)
        rates = {}
        for label, plans in (("per video", per_video_plans), ("across videos", plan_batches)):
            sizes = [plan.size for plan in plans(videos, n_frames, batch)]

            def embed_all(plans=plans, videos=videos, n_frames=n_frames) -> None:
                resume = work / "resume"
                shutil.rmtree(resume, ignore_errors=True)
                resume.mkdir()
                for _ in embed_here(plans(videos, n_frames, batch), BatchEmbedder(encoder, resume)):
                    pass

            wall = cpu = math.inf
            for _ in range(repeat):
                started_cpu = time.process_time()  # every thread of this process: the forward's and the prefetch's
                wall = min(wall, timed(embed_all))
                cpu = min(cpu, time.process_time() - started_cpu)
            rates[label] = (total / wall, total / cpu, sum(sizes) / len(sizes))
            print(f"  done: frames_count {count}, {label}", file=sys.stderr, flush=True)
        (per, per_cpu, per_size), (across, across_cpu, across_size) = rates["per video"], rates["across videos"]
        rows.append([
            count, len(videos), f"{per_size:.1f}", f"{per:.1f}", f"{per_cpu:.1f}", f"{across_size:.1f}",
            f"{across:.1f}", f"{across_cpu:.1f}", f"{across / per:.2f}x", f"{across_cpu / per_cpu:.2f}x",
        ])  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=64, help="generated 1-minute videos (default 64)")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs of each (default 3)")
    parser.add_argument("--skip-sample", action="store_true", help="skip the default sample")
    parser.add_argument("--skip-engines", action="store_true", help="only the batching table")
    parser.add_argument("--skip-batching", action="store_true", help="only the engines table")
    parser.add_argument("--images", type=int, default=256, help="batching: about this many images per row")
    args = parser.parse_args()
    print(f"machine: {machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    with tempfile.TemporaryDirectory(prefix="clipvideo-engines-") as scratch:
        work = Path(scratch)
        if not args.skip_engines:
            rows = []
            # workers at nice 0 like the local engine's threads (Ray's default, 15, yields to the other jobs here)
            with local_cluster(nodes=1, cpus_per_node=available_cores(), worker_niceness=0) as cluster:
                if not args.skip_sample:
                    rows += engine_rows("default sample", sample_project(work / "sample"), cluster, args.repeat)
                minute = minute_videos_project(work / "minute", args.videos)
                rows += engine_rows(f"{args.videos} x 1-min videos", minute, cluster, args.repeat)
            print(f"frames + embed, one process per stage (best of {args.repeat}), params.yaml defaults:\n")
            headers = ["videos", "engine", "frames s", "embed s", "total s", "vs local", "CPU s", "CPU vs local"]
            print(table(headers, rows))
        if not args.skip_batching:
            (work / "batching").mkdir()
            rows = batching_rows([4, 16, 100], args.images, 64, work / "batching", args.repeat)
            print(f"\nembed loop, ViT-B-32 fp32, batch_size 64, images/s (best of {args.repeat}):\n")
            headers = ["frames_count", "videos", "per-video batch", "img/s", "img/CPU-s", "cross-video batch", "img/s",
                       "img/CPU-s", "speedup", "speedup (CPU)"]  # fmt: skip
            print(table(headers, rows))
    print(f"\nmachine after: {machine()}")
    print("rerun: python bench/engines.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
