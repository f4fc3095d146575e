"""The reference study (reference.yaml): its numbers stand next to ours only where our run follows its protocol.

The protocol is a set of params.yaml keys and the values the study used; the report stage declares exactly
those keys (and reads the file's `protocol`, `n_test` and `f1_micro` as DVC params), so citation text can be
corrected without rerunning anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clipvideo.core.errors import ParamsError


@dataclass(frozen=True)
class Reference:
    source: str
    protocol: dict[str, Any]  # params.yaml key -> the study's value
    also_set: dict[str, Any]  # what the study command sets beyond the protocol (not compared)
    n_test: int
    f1_micro: dict[str, float]  # variant -> the study's f1_micro


def load_reference(path: Path) -> Reference:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Reference(
            str(data["source"]),
            dict(data["protocol"]),
            dict(data.get("also_set") or {}),
            int(data["n_test"]),
            {str(k): float(v) for k, v in data["f1_micro"].items()},
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ParamsError(
            f"{path.name}: expected source, protocol, n_test and f1_micro ({type(exc).__name__}: {exc})"
        ) from None


def value_at(params: Any, key: str) -> Any:
    """params.yaml's value at a dotted key, through a pydantic model or a Declared view."""
    value = params
    for part in key.split("."):
        value = getattr(value, part)
    return list(value) if isinstance(value, tuple | list) else value


def protocol_differences(reference: Reference, params: Any) -> list[str]:
    """`key=ours (study: theirs)` for each protocol key where this run differs; empty: the protocols match."""
    differences = []
    for key, theirs in reference.protocol.items():
        ours = value_at(params, key)
        if ours != theirs:
            differences.append(f"{key}={ours} (study: {theirs})")
    return differences
