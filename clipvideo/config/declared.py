"""A stage reads only the params it declares: DVC reruns a stage when one of those changes, and only then.

A param read without being declared would change the stage's output behind DVC's back. `Declared` wraps
the validated params.yaml and lets through exactly the declared keys (a declared section: everything in
it); reading any other is a one-line error naming the reader and the key. A test checks every stage's
declaration against what DVC resolves from dvc.yaml.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pydantic import BaseModel

from clipvideo.core.errors import ParamsError

ALL = "params.yaml"  # the declaration of a stage that declares the whole file (check_params)


def covers(declared: str, key: str) -> bool:
    """A declared key covers itself and everything inside it (`train.optim` covers `train.optim.lr`)."""
    return declared == ALL or key == declared or key.startswith(declared + ".")


class Declared:
    """`values` (a params section) seen through `keys`: attribute access as on the pydantic model."""

    def __init__(self, values: BaseModel, keys: Collection[str], owner: str, prefix: str = "") -> None:
        self._values, self._keys, self._owner, self._prefix = values, tuple(keys), owner, prefix

    def __getattr__(self, name: str) -> Any:
        key = self._prefix + name
        if name.startswith("_") or name not in type(self._values).model_fields:
            raise AttributeError(name)
        if any(covers(declared, key) for declared in self._keys):
            return getattr(self._values, name)
        if any(declared.startswith(key + ".") for declared in self._keys):
            return Declared(getattr(self._values, name), self._keys, self._owner, key + ".")
        raise ParamsError(f"{self._owner} reads {key}, which it does not declare")

    def __repr__(self) -> str:
        return f"Declared({self._owner}: {', '.join(self._keys)})"
