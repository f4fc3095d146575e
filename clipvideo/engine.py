"""Where the per-video work of the frames and embed stages runs: this host (`local`, the default) or a Ray cluster.

The stage itself always runs where `dvc repro` started it (on a cluster: the head node) and writes every output,
so DVC owns the outputs either way; an engine only runs the per-video calls. Ray is imported only when chosen:
a local run starts no Ray process and does not even import it.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Protocol, TypeVar

from clipvideo.errors import ParamsError

R = TypeVar("R")

KINDS = ("local", "ray")
ADDRESS_VARIABLE = "RAY_ADDRESS"  # Ray's own convention: set, it names the cluster to run on


@dataclass(frozen=True)
class EngineChoice:
    kind: str  # local | ray
    address: str | None = None  # ray: host:port of the head node; None lets ray.init() decide (see README)


def choose_engine(
    kind: str = "local", address: str | None = None, environ: Mapping[str, str] | None = None
) -> EngineChoice:
    """The engine from the settings (`kind`, `address`) and the environment: a non-empty RAY_ADDRESS runs on that
    cluster whatever the settings say (the environment of one command beats a file, as in Ray's own tools)."""
    environ = os.environ if environ is None else environ
    if environ.get(ADDRESS_VARIABLE, "").strip():
        return EngineChoice("ray", environ[ADDRESS_VARIABLE].strip())
    if kind not in KINDS:
        raise ParamsError(f"settings.yaml: engine.kind={kind!r}: expected one of {', '.join(KINDS)}")
    if kind == "local":
        return EngineChoice("local")  # an address kept in the file waits for kind: ray
    return EngineChoice("ray", address or None)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity: taskset, a container's cpuset), not the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class Engine(Protocol):
    local: bool

    def describe(self) -> str: ...

    def map(self, function: Callable[..., R], calls: Sequence[tuple]) -> Iterator[tuple[int, R]]:
        """(index into `calls`, `function(*call)`) as each call finishes, whatever the order."""
        ...

    def close(self) -> None: ...


class LocalEngine:
    """This host: `map` runs `workers` calls at a time in threads (the decoders release the GIL). Embed runs
    in the stage's own process (embeddings.embed_here); a distributed engine also has `embed`."""

    local = True

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers

    def describe(self) -> str:
        return f"on this host ({platform.node() or 'local'}, local engine, {available_cores()} cores)"

    def map(self, function: Callable[..., R], calls: Sequence[tuple]) -> Iterator[tuple[int, R]]:
        with ThreadPoolExecutor(self.workers) as pool:
            futures = {pool.submit(function, *call): index for index, call in enumerate(calls)}
            try:
                for future in as_completed(futures):
                    yield futures[future], future.result()
            finally:  # an error or Ctrl-C: do not start the rest
                for future in futures:
                    future.cancel()

    def close(self) -> None:
        pass


def open_engine(choice: EngineChoice, workers: int = 1) -> Engine:
    """The engine `choice` names, ready to run; close() it when done. `workers`: the local engine's threads."""
    if choice.kind == "local":
        return LocalEngine(workers)
    from clipvideo.ray_engine import RayEngine  # only here: a local run never imports Ray

    return RayEngine(choice.address)
