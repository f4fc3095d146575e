"""train: fit one classifier variant on the stored train embeddings -> models/<variant>.pt."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import torch

from clipvideo.cli import stage_main
from clipvideo.datasets import split_set
from clipvideo.files import atomic_path, write_table
from clipvideo.models import MODEL_KINDS, TrainConfig, build_model, train_classifier
from clipvideo.paths import ProjectPaths

SECTIONS = ("seed", "train")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("variant", choices=sorted(MODEL_KINDS), help="which classifier to train")


def run(paths: ProjectPaths, params: dict[str, Any], args: argparse.Namespace) -> str:
    settings = params["train"]
    data = split_set(paths, "train")
    config = TrainConfig(
        settings["epochs"], settings["lr"], settings["weight_decay"], settings["batch_size"], params["seed"]
    )
    torch.manual_seed(params["seed"])
    model = build_model(args.variant, data.frames.shape[-1], len(data.categories))
    history = train_classifier(model, data.frames, data.mask, data.labels, config)
    with atomic_path(paths.model_file(args.variant)) as tmp:
        torch.save(
            {"variant": args.variant, "kind": args.variant, "dim": data.frames.shape[-1],
             "categories": data.categories, "state_dict": model.state_dict()},
            tmp,
        )  # fmt: skip
    write_table(paths.training_curve_file(args.variant), ("epoch", "loss", "f1"), history)
    last = history[-1]
    dropped = f", {data.dropped} without frames skipped" if data.dropped else ""
    return (
        f"{args.variant}: {len(data.ids)} train videos{dropped}, {config.epochs} epochs, "
        f"final loss {last['loss']:.4f}, train f1 {last['f1']:.3f} -> {paths.model_file(args.variant)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("train", __doc__, SECTIONS, run, argv, add_arguments)


if __name__ == "__main__":
    sys.exit(main())
