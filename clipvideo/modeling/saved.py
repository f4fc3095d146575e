"""Trained models on disk: everything needed to rebuild the module without params.yaml (kind, sizes, options,
weights) and the settings of the embeddings it was trained on, so predict can refuse other embeddings."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clipvideo.core.errors import PipelineError
from clipvideo.core.files import write_bytes_atomic
from clipvideo.modeling.classifiers import build_model


@dataclass
class SavedModel:
    variant: str
    model: nn.Module
    categories: list[str]
    encoder: dict[str, Any]  # the encoder and frame settings of the embeddings it was trained on
    selection: dict[str, Any]  # the epoch kept and its val f1 (training.best_epoch)


def save_model(
    path: Path,
    variant: str,
    kind: str,
    model: nn.Module,
    categories: list[str],
    options: dict,
    encoder: dict[str, Any],
    selection: dict[str, Any],
) -> None:
    """Everything needed to rebuild the module without params.yaml: kind, sizes, options, weights."""
    head = model.head
    record = {
        "variant": variant,
        "kind": kind,
        "dim": head.in_features,
        "categories": categories,
        "options": options,
        "encoder": encoder,
        "selection": selection,
        "state_dict": model.state_dict(),
    }
    buffer = io.BytesIO()  # torch names the archive after the file: a buffer keeps the bytes reproducible
    torch.save(record, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def load_model(path: Path, variant: str) -> SavedModel:
    if not path.is_file():
        from clipvideo.config.variants import train_stage_name, variants

        stage = train_stage_name(variant, variants(path.parent.parent / "variants.yaml"))  # models/ is at the root
        raise PipelineError(f"{path}: no trained model for variant {variant!r}; run `dvc repro {stage}` first")
    try:
        record = torch.load(path, weights_only=True)
        model = build_model(record["kind"], record["dim"], len(record["categories"]), record["options"])
        model.load_state_dict(record["state_dict"])
    except (OSError, RuntimeError, KeyError, TypeError, EOFError) as exc:
        raise PipelineError(f"{path}: not a model file this code wrote ({type(exc).__name__}); rerun train") from exc
    return SavedModel(record["variant"], model.eval(), record["categories"], record["encoder"], record["selection"])
