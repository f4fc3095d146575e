"""What an engine is, and the local one: the per-video work of the frames and embed stages on this host.

The stage itself always runs where `dvc repro` started it (on a cluster: the head node) and writes every output,
so DVC owns the outputs either way; an engine only runs the calls it is given. Which engine runs is decided in
`factory`; the Ray engine builds on this module, never the other way.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from clipvideo.core.system import available_cores

R = TypeVar("R")
# A function that measures a process's runtime fingerprint (library versions...): a worker that measures another
# value than the stage's refuses the calls (Ray); the local engine runs them in the stage's own process.
Runtime = Callable[[], Mapping[str, Any]]


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

    def map(
        self, function: Callable[..., R], calls: Sequence[tuple], runtime: Runtime | None = None
    ) -> Iterator[tuple[int, R]]:
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

    def map(
        self, function: Callable[..., R], calls: Sequence[tuple], runtime: Runtime | None = None
    ) -> Iterator[tuple[int, R]]:
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
