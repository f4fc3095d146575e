"""The classifier variants, defined once in variants.yaml: what each one is and which params it declares.

The code reads them from here; dvc.yaml's train and evaluate stages and docs/models.md's table are generated
from them (`python -m tools.generate`), and tests fail when either drifts. No torch here.
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
VARIANT_NAME = re.compile(r"[a-z0-9]([a-z0-9_-]*[a-z0-9])?")  # a stage, file and DVC artifact (model) name
CURVE_KINDS = ("linear", "transformer")  # trained epoch by epoch: a training curve (logreg, zeroshot: fitted at once)
TORCH_PARAMS = ("train.seed", "train.optim")  # every torch variant declares these; its stage is named after the rest


class Variant(Section):
    """What a variant name means (variants.yaml): the model kind, mixup or not, all frames or one per video."""

    kind: Literal["linear", "transformer", "logreg", "zeroshot"]
    mixup: bool
    one_frame: bool
    params: Annotated[list[str], Expect("a list of distinct params.yaml keys")] = Field(min_length=1)

    @property
    def has_curve(self) -> bool:
        return self.kind in CURVE_KINDS

    @property
    def description(self) -> str:
        """What the trained model is, in a line (dvc.yaml's `artifacts`)."""
        what = {
            "linear": "linear probe",
            "transformer": "transformer",
            "logreg": "logistic regression",
            "zeroshot": "zero-shot classifier (the category prompts, untrained)",
        }[self.kind]
        frames = "one stable frame" if self.one_frame else "every sampled frame"
        mixup = ", trained with embedding mixup" if self.mixup else ""
        return f"Video category {what} on the CLIP embeddings of {frames} per video{mixup}"

    @property
    def labels(self) -> list[str]:
        return [self.kind, "one-frame" if self.one_frame else "all-frames", *(["mixup"] if self.mixup else [])]

    @property
    def train_stage(self) -> str:
        """The foreach stage of dvc.yaml that trains it: one per kind and set of params, since DVC cannot splice a
        list into `params` (`train` for the torch variants declaring TORCH_PARAMS alone, `train_mixup`,
        `train_mixup_transformer`, ..., `train_logreg`, `train_zeroshot`)."""
        if not self.has_curve:
            return f"train_{self.kind}"
        extra = sorted(
            re.sub(r"[^a-z0-9]+", "_", key.removeprefix("train.")) for key in self.params if key not in TORCH_PARAMS
        )
        return "_".join(["train", *extra])


def train_stages(found: dict[str, Variant]) -> dict[str, list[str]]:
    """Each train stage of dvc.yaml -> the variants it trains (foreach), in variants.yaml's order; one stage holds
    variants of one kind class declaring the same params, so each declares exactly its own."""
    stages: dict[str, list[str]] = {}
    for name, variant in found.items():
        stages.setdefault(variant.train_stage, []).append(name)
    for stage, names in stages.items():
        first = found[names[0]]
        for name in names[1:]:
            if (found[name].has_curve, found[name].kind == "zeroshot", set(found[name].params)) != (
                first.has_curve,
                first.kind == "zeroshot",
                set(first.params),
            ):
                raise ParamsError(
                    f"variants.yaml: {name} and {names[0]} would share the train stage {stage} but "
                    "read different things; rename a params key or a kind"
                )
    return stages


def train_stage_name(name: str, found: dict[str, Variant]) -> str:
    """The DVC address of a variant's train stage (`train@linear`, `train_logreg@logreg`)."""
    return f"{found[name].train_stage}@{name}"


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
        raise ParamsError(
            f"{path.name}: {'empty' if raw is None else quoted(raw)}; expected `variants:`, a mapping "
            "of variant names to their sections"
        )
    try:
        found = VariantsFile.model_validate(raw).variants
    except ValidationError as exc:
        raise ParamsError(variants_error(exc.errors()[0], path.name)) from None
    for name, variant in found.items():
        if not VARIANT_NAME.fullmatch(name):
            raise ParamsError(
                f"{path.name}: variant {name!r}: expected lower-case letters, digits, _ and - "
                "(a letter or digit first and last)"
            )
        unknown = [key for key in variant.params if not has_key(Params, key)]
        if unknown or len(set(variant.params)) != len(variant.params):
            problem = f"{unknown[0]!r} is not a key of params.yaml" if unknown else "a key is listed twice"
            raise ParamsError(f"{path.name}: {name}.params: {problem}")
    train_stages(found)  # two variants named to one train stage must read the same
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
