"""The Ray engine: per-video calls as Ray tasks, and model work on a pool of actors (one model replica per GPU,
or CPU replicas when the cluster has no GPU), on the cluster that RAY_ADDRESS (or the settings) names.

No worker touches a path of the driver's, so any Ray cluster serves, shared filesystem or not (KubeRay pods,
autoscaled cloud nodes): a call's file arguments travel through the object store as bytes (at most
`engine.inflight_mb` of them at once, so memory follows the cluster, not the dataset), results come back as
bytes, and the project's code is shipped with the job (`runtime_env` `py_modules`), so a worker needs only the
requirements installed and always runs the driver's code. The stage stays the only writer of outputs and of
the per-video cache, on the head node, as with the local engine.

A cluster that does not answer, or stops answering, gives a one-line verdict instead of a hang; a killed worker
is replaced and its call runs again (RETRIES). Finished videos are in the per-video cache: a rerun resumes.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import ray
from ray.exceptions import RayError, RayTaskError

import clipvideo
from clipvideo.core.cache import code_digest
from clipvideo.core.errors import ParamsError, PipelineError
from clipvideo.core.system import MAX_DECODE_THREADS_PER_GPU
from clipvideo.core.text import plural
from clipvideo.engines.engine import LocalFile, Runtime

T = TypeVar("T")
R = TypeVar("R")

RETRIES = 3  # a killed or crashed worker: its task runs again, a model replica restarts, up to this many times
TASKS_AHEAD_PER_CPU = 2  # frames: calls in flight per cluster CPU (the next one waits on the node, not the driver)
CONNECT_TIMEOUT_S = 5.0  # to reach the head node before anything else
WAIT_S = 1.0  # the longest the stage waits on the cluster without looking whether it is still there
# How often a raylet frees objects, in batches: Ray's system config key, and its default in Ray's C++ config
# (src/ray/common/ray_config_def.h), which Python cannot read. A finished call's input leaves the object store
# within FREED_AFTER_PERIODS of them (with 1.0, the store held up to 2.3x the running calls' inputs: bench).
FREE_PERIOD_KEY = "free_objects_period_milliseconds"
RAY_DEFAULT_FREE_PERIOD_MS = 1000
FREED_AFTER_PERIODS = 1.5
STORED_PER_LANE = 2  # inputs the store may hold per lane, running or not yet freed: 2 x lanes x the largest video
CODE = Path(clipvideo.__file__).parent  # shipped to every worker with the job


def total(nodes: Iterable[dict[str, Any]], resource: str) -> float:
    """How much of a resource (CPU, GPU) these nodes have together."""
    return sum(node["Resources"].get(resource, 0) for node in nodes)


def head_address(address: str) -> tuple[str, int] | None:
    """(host, port) of `host:port` or `ray://host:port`; None for `auto` (ray.init finds a local cluster)."""
    text = address.removeprefix("ray://")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def unreachable(address: str) -> str | None:
    """Why nothing answers at the head node's address (refused, timed out, unknown host), or None."""
    target = head_address(address)
    if target is None:
        return None
    try:
        with socket.create_connection(target, timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


@functools.cache
def running_code() -> str:
    """The digest of the clipvideo package this process imported."""
    return code_digest([CODE])


def check_code(driver_code: str) -> None:
    """On a worker: refuse to run other code than the driver's (an older copy found on the worker's path)."""
    if running_code() != driver_code:
        raise PipelineError(
            f"a Ray worker imported clipvideo from {CODE}, which is not the code of the stage that "
            "started it; remove that copy from the worker's Python path"
        )


def runtime_refusal(here: Mapping[str, Any], driver: Mapping[str, Any]) -> PipelineError | None:
    """Why a worker must not work, in one line naming each key where its runtime fingerprint (library versions,
    device, precision path) differs from the driver's: its bytes could differ, and the per-video cache would file
    them under the driver's key. None when they are the same."""
    differs = [key for key in {**driver, **here} if here.get(key) != driver.get(key)]
    if not differs:
        return None
    named = ", ".join(f"{key} {here.get(key)!r} (the stage: {driver.get(key)!r})" for key in differs)
    fix = "install the same locked environment on every node (uv sync --locked)"
    if "cpu_capability" in differs:
        fix += " and set ATEN_CPU_CAPABILITY to one value (avx2, ...) on every node and the stage's"
    return PipelineError(
        f"a Ray worker on {socket.gethostname()} runs {named}: its results could differ from the stage's; {fix}"
    )


def check_runtime(here: Mapping[str, Any], driver: Mapping[str, Any]) -> None:
    """On a worker: refuse to work with another runtime fingerprint than the driver's (runtime_refusal)."""
    refusal = runtime_refusal(here, driver)
    if refusal is not None:
        raise refusal


def with_local_files(
    function: Callable[..., R],
    driver_code: str,
    runtime: Runtime | None,
    driver_runtime: Mapping[str, Any] | None,
    file_positions: tuple[int, ...],
    *args: Any,
) -> R:
    """On a worker: the bytes at `file_positions` become private temporary files, the call gets their paths;
    first, a worker whose `runtime` measures another fingerprint than the driver's refuses."""
    check_code(driver_code)
    if runtime is not None and driver_runtime is not None:
        check_runtime(runtime(), driver_runtime)
    with tempfile.TemporaryDirectory(prefix="clipvideo-") as folder:
        call = list(args)
        for position in file_positions:
            path = Path(folder) / f"input-{position}"
            path.write_bytes(call[position])
            call[position] = path
        return function(*call)


class Replica(Protocol):
    """A model replica: `prepare` an item (read, decode: runs ahead in threads), then `finish` it (the model)."""

    def runtime(self) -> Mapping[str, Any]:
        """Its runtime fingerprint, measured where it runs."""
        ...

    def prepare(self, item: Any) -> Any: ...

    def finish(self, prepared: Any) -> Any: ...


class ReplicaSpec(Protocol):
    """How a worker builds the stage's replica (a frozen dataclass: the same weights, seed and torch threads)."""

    device: str  # as set: auto | cpu | cuda
    threads: int  # the stage's own torch threads (CPU floats can depend on them)
    runtime: Mapping[str, Any]  # the runtime fingerprint the stage keys the results by: a replica must match it

    def build(self, device: str) -> Replica: ...


class ReplicaActor:
    """One model replica, built once. Calls run in `max_concurrency` threads, so the next items are prepared while
    one is in the model; the lock lets one `finish` run at a time, as in the local engine."""

    def __init__(self, spec: ReplicaSpec, device: str, driver_code: str) -> None:
        check_code(driver_code)
        self.replica = spec.build(device)
        self.forward = threading.Lock()
        # refused on each call, not here: a call's error reaches the stage as itself, the actor's as "it died"
        self.refusal = runtime_refusal(self.replica.runtime(), spec.runtime)

    def run(self, item: Any) -> Any:
        if self.refusal is not None:
            raise self.refusal
        prepared = self.replica.prepare(item)
        with self.forward:
            return self.replica.finish(prepared)


def free_period_s(system_config: Mapping[str, Any], environ: Mapping[str, str]) -> float:
    """The raylet's period for freeing objects, resolved as Ray resolves it: the cluster's system config (`ray
    start --system-config`, `ray.init(_system_config=...)`), else RAY_free_objects_period_milliseconds, else
    Ray's default. A value Ray could not read either leaves the default."""
    for value in (system_config.get(FREE_PERIOD_KEY), environ.get(f"RAY_{FREE_PERIOD_KEY}")):
        if value is not None:
            try:
                return max(0.0, float(value)) / 1000
            except (TypeError, ValueError):
                break
    return RAY_DEFAULT_FREE_PERIOD_MS / 1000


def cluster_system_config() -> Mapping[str, Any]:
    """The system config of the cluster this process is connected to: what its head node was started with."""
    try:
        return ray._private.state.state.get_system_config()
    except (AttributeError, RayError, RuntimeError, ValueError):  # a private API: a Ray without it has the env var
        return {}


class StoredInputs:
    """The calls' inputs that may be in the object store: those of running calls, and of calls finished less than
    `freed_within_s` ago (the owner lets go at once, but a raylet frees in batches, once a second by default).
    Bounding both, in calls and in bytes, bounds the store's use however short the calls are."""

    def __init__(
        self, most_calls: int, budget: int, freed_within_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.most_calls = most_calls
        self.budget = budget
        self.freed_within_s = freed_within_s
        self.clock = clock
        self.running_calls = 0
        self.running_bytes = 0
        self.freeing: collections.deque[tuple[float, int]] = collections.deque()  # (finished at, bytes)

    def admits(self, size: int) -> bool:
        """Whether a call with `size` input bytes may start now; one with none always may, as may any one call
        when nothing is held (a video larger than the budget goes alone)."""
        now = self.clock()
        while self.freeing and now - self.freeing[0][0] >= self.freed_within_s:
            self.freeing.popleft()
        calls = self.running_calls + len(self.freeing)
        held = self.running_bytes + sum(size for _, size in self.freeing)
        return not size or not calls or (calls < self.most_calls and held + size <= self.budget)

    def start(self, size: int) -> None:
        if size:
            self.running_calls += 1
            self.running_bytes += size

    def finish(self, size: int) -> None:
        if size:
            self.running_calls -= 1
            self.running_bytes -= size
            self.freeing.append((self.clock(), size))

    def until_freed(self) -> float:
        """Seconds until the oldest finished input leaves the store (at most WAIT_S)."""
        if not self.freeing:
            return WAIT_S
        return min(WAIT_S, max(0.01, self.freeing[0][0] + self.freed_within_s - self.clock()))


class RayEngine:
    local = False

    def __init__(self, address: str | None, inflight_mb: int = 1024) -> None:
        shown = address or "auto"
        why = unreachable(shown)
        if why:
            raise PipelineError(
                f"Ray cluster at {shown}: nothing answers there ({why}); check the address and port (`ray start "
                "--head` prints them), that the head node runs and no firewall is in the way, or unset RAY_ADDRESS "
                "(and settings.yaml's engine.kind) to run on this machine"
            )
        # WARNING: no "connecting to ..." lines in the stage's output; log_to_driver: workers print nothing useful
        runtime_env = {"py_modules": [str(CODE)], "excludes": ["__pycache__"]}
        on_sigterm = signal.getsignal(signal.SIGTERM)
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, runtime_env=runtime_env)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_sigterm)  # ray.init sets its own: the stage decides what SIGTERM does
        self.address = ray.get_runtime_context().gcs_address
        # read once the cluster is joined: its head node's config, not a guess of Ray's default
        self.freed_within_s = FREED_AFTER_PERIODS * free_period_s(cluster_system_config(), os.environ)
        self.budget = inflight_mb * 1024 * 1024
        self.work = ""  # what embed ran, for describe()
        self.last_check = time.monotonic()

    def nodes(self) -> list[dict[str, Any]]:
        return [node for node in ray.nodes() if node["Alive"]]

    def cpus(self) -> int:
        return int(total(self.nodes(), "CPU"))

    def describe(self) -> str:
        nodes = self.nodes()
        cpus, gpus = total(nodes, "CPU"), total(nodes, "GPU")
        where = f"on Ray cluster {self.address} ({plural(len(nodes), 'node')}, {cpus:g} CPUs, {gpus:g} GPUs)"
        return f"{where}, {self.work}" if self.work else where

    def check_cluster(self) -> None:
        """While waiting: the head node must still answer, and some node must still have a CPU."""
        if time.monotonic() - self.last_check < 2 * WAIT_S:
            return
        self.last_check = time.monotonic()
        why = unreachable(self.address)
        what = f"stopped answering during the run ({why})" if why else ""
        if not what and not self.cpus():
            what = "lost every node with a CPU during the run"
        if what:
            raise PipelineError(
                f"Ray cluster at {self.address}: {what}; finished videos are kept in the per-video cache: rerun when "
                "the cluster is back, or without RAY_ADDRESS to run here"
            )

    def fetched(self, ref: ray.ObjectRef, what: str) -> Any:
        """A call's result; a worker's own error is raised as itself (as the local engine would), a worker that
        died more than RETRIES times as one line."""
        try:
            return ray.get(ref)
        except RayTaskError as exc:
            if isinstance(exc.cause, Exception):
                raise exc.cause from None
            raise
        except RayError as exc:
            self.check_cluster()
            raise PipelineError(
                f"Ray: {what}: the worker died {RETRIES + 1} times ({type(exc).__name__}); see the cluster's logs "
                "(ray status, /tmp/ray/session_latest/logs) and rerun: finished videos are kept"
            ) from exc

    def completed(
        self,
        lanes: Sequence[Callable[[T], ray.ObjectRef]],
        items: Iterable[T],
        name: Callable[[T], str],
        cost: Callable[[T], int] = lambda item: 0,
    ) -> Iterator[tuple[T, Any]]:
        """(item, result) as each call finishes. A lane (a task submitter, or one actor's method) holds one call at
        a time; items are taken from `items` only as lanes free up and while the object store has room for their
        input bytes (`cost`, StoredInputs), so a long lazy plan is never held whole."""
        pending = iter(items)
        waiting: list[T] = []  # taken from `items`, not submitted: the store holds enough
        in_flight: dict[ray.ObjectRef, tuple[int, T, int]] = {}
        free = list(range(len(lanes)))
        store = StoredInputs(STORED_PER_LANE * len(lanes), self.budget, self.freed_within_s)

        def fill() -> None:
            while free:
                item = waiting.pop() if waiting else next(pending, None)
                if item is None:
                    return
                size = cost(item)
                if not store.admits(size):
                    waiting.append(item)
                    return
                lane = free.pop()
                in_flight[lanes[lane](item)] = (lane, item, size)
                store.start(size)

        fill()
        while in_flight or waiting:
            if in_flight:
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=store.until_freed())
            else:  # every input that may go waits on the store
                time.sleep(store.until_freed())
                ready = []
            if not ready:  # a short wait: Ctrl-C and SIGTERM get through, and a dead cluster is noticed
                self.check_cluster()
                fill()
                continue
            lane, item, size = in_flight.pop(ready[0])
            store.finish(size)
            free.append(lane)
            result = self.fetched(ready[0], name(item))
            fill()
            yield item, result

    def map(
        self, function: Callable[..., R], calls: Sequence[tuple], runtime: Runtime | None = None
    ) -> Iterator[tuple[int, R]]:
        """(index into `calls`, `function(*call)`) as each finishes: one Ray task per call, one CPU each; a
        LocalFile argument's bytes are put in the object store when its call is submitted. A worker where
        `runtime` measures another fingerprint than here refuses the call."""
        remote = ray.remote(num_cpus=1, max_retries=RETRIES)(with_local_files)
        driver_runtime = dict(runtime()) if runtime is not None else None
        cpus = self.cpus()
        if not cpus:
            raise PipelineError(f"Ray cluster at {self.address}: no node has a CPU to run tasks on")

        def submit(item: tuple[int, tuple]) -> ray.ObjectRef:
            call = item[1]
            files = tuple(i for i, arg in enumerate(call) if isinstance(arg, LocalFile))
            args = [ray.put(arg.path.read_bytes()) if i in files else arg for i, arg in enumerate(call)]
            return remote.remote(function, running_code(), runtime, driver_runtime, files, *args)

        def cost(item: tuple[int, tuple]) -> int:
            return sum(arg.size for arg in item[1] if isinstance(arg, LocalFile))

        lanes = [submit] * (cpus * TASKS_AHEAD_PER_CPU)
        name = function.__name__
        for (index, _), result in self.completed(lanes, enumerate(calls), lambda item: f"{name}(...)", cost):
            yield index, result

    def replica_device(self, device: str) -> str:
        """The device type model replicas run on for embed.device `device` (auto: cuda when the cluster has a GPU)."""
        gpus = int(total(self.nodes(), "GPU"))
        if device == "cuda" and not gpus:
            raise ParamsError(f"settings.yaml: embed.device='cuda': the Ray cluster at {self.address} has no GPU")
        return "cuda" if device != "cpu" and gpus else "cpu"

    def replicas(self, spec: ReplicaSpec, items: Iterable[T], name: Callable[[T], str]) -> Iterator[Any]:
        """Every item's result, on one model replica per GPU, or CPU replicas that use the stage's own torch
        thread count (CPU floats can depend on it), as many as the nodes' CPUs hold."""
        nodes = self.nodes()
        gpus = int(total(nodes, "GPU"))
        if self.replica_device(spec.device) == "cuda":
            cpus_per_gpu = min(
                int(node["Resources"].get("CPU", 1) // node["Resources"]["GPU"])
                for node in nodes
                if node["Resources"].get("GPU")
            )
            cpus = min(cpus_per_gpu, MAX_DECODE_THREADS_PER_GPU)  # decoding for thousands of images a second
            threads = max(1, cpus)  # a GPU node without CPUs still gets its replica (and a thread)
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
        shared = ray.put(spec)  # once in the object store, however many replicas (it may hold a checkpoint's bytes)
        actors = [actor_class.options(**options).remote(shared, device, running_code()) for _ in range(count)]
        lanes = [actor.run.remote for actor in actors for _ in range(options["max_concurrency"] + 1)]
        try:
            for _, result in self.completed(lanes, items, name):
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
