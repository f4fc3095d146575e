"""Where the per-video work of the frames and embed stages runs: this host (`local`, the default) or a Ray cluster.

The stage itself always runs where `dvc repro` started it (on a cluster: the head node) and writes every output,
so DVC owns the outputs either way; an engine only runs the calls it is given. Ray is imported only when chosen:
a local run starts no Ray process and does not even import it.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from clipvideo.config.schema import EngineSettings
from clipvideo.core.system import available_cores

R = TypeVar("R")
# A function that measures a process's runtime fingerprint (library versions...): a worker that measures another
# value than the stage's refuses the calls (Ray); the local engine runs them in the stage's own process.
Runtime = Callable[[], Mapping[str, Any]]

ADDRESS_VARIABLE = "RAY_ADDRESS"  # Ray's own convention: set, it names the cluster to run on


@dataclass(frozen=True)
class EngineChoice:
    kind: Literal["local", "ray"]
    address: str | None = None  # ray: host:port of the head node; None lets ray.init() decide (docs/scale-out.md)


def choose_engine(settings: EngineSettings, environ: Mapping[str, str] | None = None) -> EngineChoice:
    """The engine settings.yaml names, unless the environment names a cluster: a non-empty RAY_ADDRESS runs on
    it whatever the file says (the environment of one command beats a file, as in Ray's own tools)."""
    environ = os.environ if environ is None else environ
    if environ.get(ADDRESS_VARIABLE, "").strip():
        return EngineChoice("ray", environ[ADDRESS_VARIABLE].strip())
    if settings.kind == "local":
        return EngineChoice("local")  # an address kept in the file waits for kind: ray
    return EngineChoice("ray", settings.address or None)


@dataclass(frozen=True)
class LocalFile:
    """A file a call takes as an argument. The local engine passes its path; a cluster engine sends its bytes
    through the object store and the call sees a private copy on the worker, so no worker needs the driver's files."""

    path: Path

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def local_paths(call: tuple) -> tuple:
    return tuple(arg.path if isinstance(arg, LocalFile) else arg for arg in call)


class Engine(Protocol):
    local: bool

    def describe(self) -> str: ...

    def map(self, function: Callable[..., R], calls: Sequence[tuple],
            runtime: Runtime | None = None) -> Iterator[tuple[int, R]]:  # fmt: skip
        """(index into `calls`, `function(*call)`) as each call finishes, whatever the order; where `runtime`
        measures another fingerprint than in the stage's process, the calls are refused."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Engine: ...

    def __exit__(self, *exc: object) -> None: ...


class LocalEngine:
    """This host: `map` runs `workers` calls at a time in threads (the decoders release the GIL)."""

    local = True

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers

    def describe(self) -> str:
        return f"on this host ({platform.node() or 'local'}, local engine, {available_cores()} cores)"

    def map(self, function: Callable[..., R], calls: Sequence[tuple],
            runtime: Runtime | None = None) -> Iterator[tuple[int, R]]:  # fmt: skip
        with ThreadPoolExecutor(self.workers) as pool:
            futures = {pool.submit(function, *local_paths(call)): index for index, call in enumerate(calls)}
            try:
                for future in as_completed(futures):
                    yield futures[future], future.result()
            finally:  # an error or Ctrl-C: do not start the rest
                for future in futures:
                    future.cancel()

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_engine(settings: EngineSettings, workers: int = 1) -> Engine:
    """The engine the settings (or RAY_ADDRESS) name, ready to run; use it in a `with` block.
    `workers`: the local engine's threads."""
    choice = choose_engine(settings)
    if choice.kind == "local":
        return LocalEngine(workers)
    from clipvideo.engines.ray_engine import RayEngine  # only here: a local run never imports Ray

    return RayEngine(choice.address, settings.inflight_mb)
