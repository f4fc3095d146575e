"""Which engine runs the per-video work: this host (`local`, the default) or a Ray cluster (RAY_ADDRESS or the
settings). Its own module so that imports run one way: the factory imports both engines, the Ray engine imports
the local one's types, and Ray is imported only when chosen: a local run starts no Ray process and does not even
import it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from clipvideo.config.schema import EngineSettings
from clipvideo.engines.engine import Engine, LocalEngine

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


def open_engine(settings: EngineSettings, workers: int = 1) -> Engine:
    """The engine the settings (or RAY_ADDRESS) name, ready to run; use it in a `with` block.
    `workers`: the local engine's threads."""
    choice = choose_engine(settings)
    if choice.kind == "local":
        return LocalEngine(workers)
    from clipvideo.engines.ray_engine import RayEngine  # only here: a local run never imports Ray

    return RayEngine(choice.address, settings.inflight_mb)
