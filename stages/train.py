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
from clipvideo.embeddings import load_embeddings, recorded_encoder
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
    variant_spec,
    zeroshot_model,
)
from clipvideo.paths import ProjectPaths
from clipvideo.zeroshot import TEXT_FILE, load_text_embeddings

SECTIONS = ("seed", "train")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("variant", help="which classifier to train (linear, transformer-mixup, logreg, ...)")


def fit(
    variant: str, data: LabelledSet, frames: np.ndarray, mask: np.ndarray, params: dict[str, Any], paths: ProjectPaths
) -> tuple[nn.Module, dict[str, Any], list[dict[str, float]]]:
    """The fitted module, the options needed to rebuild it, and its training curve."""
    spec = variant_spec(variant)
    train = params["train"]
    make_deterministic(params["seed"])
    if spec.kind == "logreg":
        options = train["logreg"]
        model, history = fit_logreg(
            frames, mask, data.labels, len(data.categories), options["C"], options["max_iter"]
        )  # fmt: skip
        return model, {}, history
    if spec.kind == "zeroshot":
        text = load_text_embeddings(paths.embeddings_dir)
        model = zeroshot_model(text.for_categories(data.categories, paths.embeddings_dir / TEXT_FILE))
        return model, {}, [fit_record(model, frames, mask, data.labels, epoch=0)]
    options = dict(train["transformer"]) if spec.kind == "transformer" else {}
    model = build_model(spec.kind, frames.shape[-1], len(data.categories), options)
    config = TrainConfig(
        epochs=train["optim"]["epochs"],
        lr=train["optim"]["lr"],
        weight_decay=train["optim"]["weight_decay"],
        batch_size=train["optim"]["batch_size"],
        seed=params["seed"],
        mixup_alpha=train["mixup"]["alpha"] if spec.mixup else None,
    )
    return model, options, train_classifier(model, frames, mask, data.labels, config)


def run(paths: ProjectPaths, params: dict[str, Any], settings: dict[str, Any], args: argparse.Namespace) -> str:
    spec = variant_spec(args.variant)
    embeddings = load_embeddings(paths.embeddings_dir)
    data = split_set(paths, "train", embeddings)
    frames, mask = variant_inputs(spec, data.frames, data.mask, data.ids)
    model, options, history = fit(args.variant, data, frames, mask, params, paths)
    encoder = recorded_encoder(embeddings.meta)
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
