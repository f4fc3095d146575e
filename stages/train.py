"""train: fit one classifier variant on the stored train embeddings -> models/<variant>.pt, its curve."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from clipvideo.cli import stage_main
from clipvideo.datasets import LabelledSet, split_set
from clipvideo.embeddings import ENCODER_KEYS, load_embeddings, recorded_encoder
from clipvideo.errors import PipelineError
from clipvideo.files import write_table
from clipvideo.models import (
    TrainConfig,
    build_model,
    fit_logreg,
    fit_record,
    make_deterministic,
    save_model,
    train_classifier,
    variant_inputs,
    zeroshot_model,
)
from clipvideo.params import subset
from clipvideo.paths import ProjectPaths
from clipvideo.variants import VARIANTS, Variant, variant_spec
from clipvideo.zeroshot import TEXT_FILE, load_text_embeddings

# Every section some variant declares; each variant then sees only its own keys (variants.yaml `params`).
SECTIONS = tuple(sorted({key.split(".")[0] for variant in VARIANTS.values() for key in variant.params}))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("variant", help="which classifier to train (linear, transformer-mixup, logreg, ...)")


def zeroshot_classifier(paths: ProjectPaths, data: LabelledSet, frames_encoder: dict[str, Any]) -> nn.Module:
    """The prompt embeddings as a classifier; they must come from the encoder that embedded the frames."""
    text = load_text_embeddings(paths.text_dir)
    differs = [key for key in ENCODER_KEYS if text.encoder.get(key) != frames_encoder.get(key)]
    if differs:
        raise PipelineError(
            f"{paths.text_dir}: prompts embedded with {differs[0]}={text.encoder.get(differs[0])!r}, frames with "
            f"{frames_encoder.get(differs[0])!r}; rerun dvc repro"
        )
    return zeroshot_model(text.for_categories(data.categories, paths.text_dir / TEXT_FILE))


def fit(
    spec: Variant, data: LabelledSet, frames: np.ndarray, mask: np.ndarray, params: dict[str, Any]
) -> tuple[nn.Module, dict[str, Any], list[dict[str, float]]]:
    """The fitted module, the options needed to rebuild it, and its training curve (logreg and torch kinds).

    `params` holds only the keys the variant declares, so reading any other fails here, not silently.
    """
    if spec.kind == "logreg":
        options = params["train"]["logreg"]
        model, history = fit_logreg(
            frames, mask, data.labels, len(data.categories), options["C"], options["max_iter"]
        )  # fmt: skip
        return model, {}, history
    optim = params["train"]["optim"]
    make_deterministic(params["seed"])  # the initial weights
    options = dict(params["train"]["transformer"]) if spec.kind == "transformer" else {}
    model = build_model(spec.kind, frames.shape[-1], len(data.categories), options)
    config = TrainConfig(
        epochs=optim["epochs"],
        lr=optim["lr"],
        weight_decay=optim["weight_decay"],
        batch_size=optim["batch_size"],
        seed=params["seed"],
        mixup_alpha=params["train"]["mixup"]["alpha"] if spec.mixup else None,
    )
    return model, options, train_classifier(model, frames, mask, data.labels, config)


def run(paths: ProjectPaths, params: dict[str, Any], settings: dict[str, Any], args: argparse.Namespace) -> str:
    spec = variant_spec(args.variant)
    embeddings = load_embeddings(paths.embeddings_dir)
    data = split_set(paths, "train", embeddings)
    frames, mask = variant_inputs(spec, data.frames, data.mask, data.ids)
    encoder = recorded_encoder(embeddings.meta)
    if spec.kind == "zeroshot":
        model, options = zeroshot_classifier(paths, data, encoder), {}
        history = [fit_record(model, frames, mask, data.labels, epoch=0)]
    else:
        declared = subset(params, spec.params, f"variants.yaml: {args.variant}")
        model, options, history = fit(spec, data, frames, mask, declared)
    save_model(paths.model_file(args.variant), args.variant, model, data.categories, options, encoder)
    write_table(paths.training_curve_file(args.variant), ("epoch", "loss", "f1"), history)
    last = history[-1]
    dropped = f", {data.dropped} without frames skipped" if data.dropped else ""
    return (
        f"{args.variant}: {len(data.ids)} train videos{dropped}, final train loss {last['loss']:.4f}, "
        f"train f1 {last['f1']:.3f} -> {paths.model_file(args.variant)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("train", __doc__, SECTIONS, run, argv, add_arguments)


if __name__ == "__main__":
    sys.exit(main())
