"""The Ray engine: per-video calls as Ray tasks, and model work on a pool of actors (one model replica per GPU,
or CPU replicas when the cluster has no GPU), on the cluster that RAY_ADDRESS (or the settings) names.

The stage is the Ray driver, on the head node: it plans the work, hands it out and writes every output, so DVC
owns them as with the local engine. Workers read the videos and frames files and write the resume folders
through the stage's own absolute paths: every node must see the project at the same path (a shared
filesystem). A killed worker is replaced and its call runs again (RETRIES); a call's result is a file under
a name fixed by its input, written atomically, so a retry can neither lose nor duplicate a video.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

import ray
from ray.exceptions import RayError, RayTaskError

from clipvideo.core.errors import ParamsError, PipelineError
from clipvideo.core.text import plural

T = TypeVar("T")
R = TypeVar("R")

RETRIES = 3  # a killed or crashed worker: its task runs again, a model replica restarts, up to this many times
TASKS_AHEAD_PER_CPU = 2  # frames: calls in flight per cluster CPU (the next one waits on the node, not the driver)
MAX_DECODE_THREADS_PER_GPU = 8  # a GPU replica's CPUs: decoding for thousands of images a second, as loader_threads


class Replica(Protocol):
    """A model replica: `prepare` an item (read, decode: runs ahead in threads), then `finish` it (the model)."""

    def prepare(self, item: Any) -> Any: ...

    def finish(self, prepared: Any) -> Any: ...


class ReplicaSpec(Protocol):
    """How a worker builds the stage's replica (a frozen dataclass: the same weights, seed and torch threads)."""

    device: str  # as set: auto | cpu | cuda
    threads: int  # the stage's own torch threads (CPU floats can depend on them)

    def build(self, device: str) -> Replica: ...


class ReplicaActor:
    """One model replica, built once. Calls run in `max_concurrency` threads, so the next items are prepared while
    one is in the model; the lock lets one `finish` run at a time, as in the local engine."""

    def __init__(self, spec: ReplicaSpec, device: str) -> None:
        self.replica = spec.build(device)
        self.forward = threading.Lock()

    def run(self, item: Any) -> Any:
        prepared = self.replica.prepare(item)
        with self.forward:
            return self.replica.finish(prepared)


def fetched(ref: ray.ObjectRef, what: str) -> Any:
    """A call's result; a worker's own error is raised as itself (as the local engine would), a worker that died
    more than RETRIES times as one line."""
    try:
        return ray.get(ref)
    except RayTaskError as exc:
        if isinstance(exc.cause, Exception):
            raise exc.cause from None
        raise
    except RayError as exc:
        raise PipelineError(
            f"Ray: {what}: the worker died {RETRIES + 1} times ({type(exc).__name__}); see the cluster's logs "
            "(ray status, /tmp/ray/session_latest/logs) and rerun: finished videos are kept"
        ) from exc


def completed(
    lanes: Sequence[Callable[[T], ray.ObjectRef]], items: Iterable[T], name: Callable[[T], str]
) -> Iterator[tuple[T, Any]]:
    """(item, result) as each call finishes. A lane (a task submitter, or one actor's method) holds one call at a
    time; items are taken from `items` only as lanes free up, so a long lazy plan is never held whole."""
    pending = iter(items)
    in_flight: dict[ray.ObjectRef, tuple[int, T]] = {}

    def submit(lane: int) -> None:
        for item in pending:
            in_flight[lanes[lane](item)] = (lane, item)
            return

    for lane in range(len(lanes)):
        submit(lane)
    while in_flight:
        [ref], _ = ray.wait(list(in_flight), num_returns=1)
        lane, item = in_flight.pop(ref)
        result = fetched(ref, name(item))
        submit(lane)
        yield item, result


class RayEngine:
    local = False

    def __init__(self, address: str | None) -> None:
        # WARNING: no "connecting to ..." lines in the stage's output; log_to_driver: workers print nothing useful
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        self.address = ray.get_runtime_context().gcs_address
        self.work = ""  # what embed ran, for describe()

    def nodes(self) -> list[dict[str, Any]]:
        return [node for node in ray.nodes() if node["Alive"]]

    def describe(self) -> str:
        nodes = self.nodes()
        cpus = sum(node["Resources"].get("CPU", 0) for node in nodes)
        gpus = sum(node["Resources"].get("GPU", 0) for node in nodes)
        where = f"on Ray cluster {self.address} ({plural(len(nodes), 'node')}, {cpus:g} CPUs, {gpus:g} GPUs)"
        return f"{where}, {self.work}" if self.work else where

    def map(self, function: Callable[..., R], calls: Sequence[tuple]) -> Iterator[tuple[int, R]]:
        """(index into `calls`, `function(*call)`) as each finishes: one Ray task per call, one CPU each."""
        remote = ray.remote(num_cpus=1, max_retries=RETRIES)(function)
        cpus = int(sum(node["Resources"].get("CPU", 0) for node in self.nodes()))
        if not cpus:
            raise PipelineError(f"Ray cluster at {self.address}: no node has a CPU to run tasks on")
        lanes = [lambda item: remote.remote(*item[1])] * (cpus * TASKS_AHEAD_PER_CPU)
        name = function.__name__
        for (index, _), result in completed(lanes, enumerate(calls), lambda item: f"{name}({item[1][0]!r}, ...)"):
            yield index, result

    def replicas(self, spec: ReplicaSpec, items: Iterable[T], name: Callable[[T], str]) -> Iterator[Any]:
        """Every item's result, on one model replica per GPU, or CPU replicas that use the stage's own torch
        thread count (CPU floats can depend on it), as many as the nodes' CPUs hold."""
        nodes = self.nodes()
        gpus = int(sum(node["Resources"].get("GPU", 0) for node in nodes))
        if spec.device == "cuda" and not gpus:
            raise ParamsError(f"settings.yaml: embed.device='cuda': the Ray cluster at {self.address} has no GPU")
        if spec.device != "cpu" and gpus:
            cpus_per_gpu = min(
                int(node["Resources"].get("CPU", 1) // node["Resources"]["GPU"])
                for node in nodes
                if node["Resources"].get("GPU")
            )
            threads = max(1, min(cpus_per_gpu, MAX_DECODE_THREADS_PER_GPU))
            cpus = min(threads, cpus_per_gpu)  # a GPU node without CPUs still gets its replica
            count, device, options = gpus, "cuda", {"num_gpus": 1, "num_cpus": cpus, "max_concurrency": threads + 1}
            self.work = f"{plural(count, 'GPU model replica')}"
        else:
            threads = int(min(spec.threads, max(node["Resources"].get("CPU", 0) for node in nodes)))
            if threads < 1:
                raise PipelineError(f"Ray cluster at {self.address}: no node has a CPU for a model replica")
            count = sum(int(node["Resources"].get("CPU", 0) // threads) for node in nodes)
            device, options = "cpu", {"num_cpus": threads, "max_concurrency": 2}
            self.work = f"{plural(count, 'CPU model replica')} x {plural(threads, 'thread')}"
        actor_class = ray.remote(max_restarts=RETRIES, max_task_retries=RETRIES)(ReplicaActor)
        spec = dataclasses.replace(spec, threads=threads)  # type: ignore[type-var]
        actors = [actor_class.options(**options).remote(spec, device) for _ in range(count)]
        lanes = [actor.run.remote for actor in actors for _ in range(options["max_concurrency"] + 1)]
        try:
            for _, result in completed(lanes, items, name):
                yield result
        finally:
            for actor in actors:
                ray.kill(actor)

    def close(self) -> None:
        ray.shutdown()

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
