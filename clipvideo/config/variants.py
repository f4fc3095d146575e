"""The classifier variants, defined once in variants.yaml: what each one is and which params it declares.

The code reads them from here; dvc.yaml's `vars` block (the stages' slots) and docs/models.md's table are
generated from them (`python -m tools.generate`), and tests fail when either drifts. No torch here.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from clipvideo.config.loading import constraint_text, has_key, read_yaml
from clipvideo.config.schema import Expect, Params, Section
from clipvideo.core.errors import ParamsError
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.text import quoted

VARIANTS_FILE = ProjectPaths().variants  # at the project root, where DVC runs every stage
PARAM_SLOTS = 4  # dvc.yaml names each variant's params in this many fixed slots (it cannot splice a list)
VARIANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")  # becomes a stage name (train@<name>) and file names
CURVE_KINDS = ("linear", "transformer")  # trained epoch by epoch: a training curve (logreg, zeroshot: fitted at once)


class Variant(Section):
    """What a variant name means (variants.yaml): the model kind, mixup or not, all frames or one per video."""

    kind: Literal["linear", "transformer", "logreg", "zeroshot"]
    mixup: bool
    one_frame: bool
    params: Annotated[list[str], Expect(f"a list of 1 to {PARAM_SLOTS} distinct params.yaml keys")] = Field(
        min_length=1, max_length=PARAM_SLOTS
    )

    @property
    def has_curve(self) -> bool:
        return self.kind in CURVE_KINDS

    def dvc_slots(self, name: str) -> dict[str, Any]:
        """What dvc.yaml's `vars` holds for the variant: its params in exactly PARAM_SLOTS slots (DVC records a
        repeated key once), its one extra input (the others repeat data/split.csv, read anyway) and its training
        curve (a variant without one repeats its model: DVC merges a repeated out, the model's own entry wins)."""
        padded = self.params + [self.params[-1]] * (PARAM_SLOTS - len(self.params))
        paths = ProjectPaths()
        extra = paths.text_dir if self.kind == "zeroshot" else paths.split_table  # zeroshot: the prompt embeddings
        curve = paths.training_curve_file(name) if self.has_curve else paths.model_file(name)
        return {"params": padded, "input": extra.as_posix(), "curve": curve.as_posix()}


class VariantsFile(Section):
    variants: dict[str, Variant]


def variants_error(error: dict[str, Any], label: str) -> str:
    """pydantic's first error as `variants.yaml: <variant>.<key>=<value>: expected ...` (or unknown/missing key)."""
    location = [str(part) for part in error["loc"]]
    where = ".".join(location[1:]) or location[0]
    if error["type"] == "extra_forbidden":
        takes = ", ".join(Variant.model_fields) if len(location) == 3 else "variants"
        return f"{label}: unknown key {where}; {'a variant' if len(location) == 3 else 'the file'} takes {takes}"
    if error["type"] == "missing":
        return f"{label}: missing key {where}"
    if len(location) == 3 and location[2] in Variant.model_fields:
        expected = constraint_text(Variant.model_fields[location[2]])
    elif len(location) == 2:
        expected = "a section with keys " + ", ".join(Variant.model_fields)
    else:
        expected = "a mapping of variant names to their sections"
    return f"{label}: {where}={quoted(error['input'])}: expected {expected}"


def load_variants(path: Path = VARIANTS_FILE) -> dict[str, Variant]:
    """variants.yaml, checked: a one-line error names the variant and the key."""
    raw = read_yaml(path, path.name)
    if not isinstance(raw, dict):
        raise ParamsError(f"{path.name}: {'empty' if raw is None else quoted(raw)}; expected `variants:`, a mapping "
                          "of variant names to their sections")  # fmt: skip
    try:
        found = VariantsFile.model_validate(raw).variants
    except ValidationError as exc:
        raise ParamsError(variants_error(exc.errors()[0], path.name)) from None
    for name, variant in found.items():
        if not VARIANT_NAME.fullmatch(name):
            raise ParamsError(f"{path.name}: variant {name!r}: expected lower-case letters, digits, _ and -")
        unknown = [key for key in variant.params if not has_key(Params, key)]
        if unknown or len(set(variant.params)) != len(variant.params):
            problem = f"{unknown[0]!r} is not a key of params.yaml" if unknown else "a key is listed twice"
            raise ParamsError(f"{path.name}: {name}.params: {problem}")
    return found


@functools.cache
def variants(path: Path = VARIANTS_FILE) -> dict[str, Variant]:
    """variants.yaml, read and checked once per process (check_params checks it first in a run)."""
    return load_variants(path)


def variant_spec(name: str, path: Path = VARIANTS_FILE) -> Variant:
    known = variants(path)
    if name not in known:
        raise ParamsError(f"unknown variant {name!r}; expected one of {', '.join(known)} ({path.name})")
    return known[name]
