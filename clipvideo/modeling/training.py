"""Training a variant on the stored train embeddings: seeded, deterministic, one epoch at a time with progress.

A variant sees only the params it declares in variants.yaml (config.declared): its train stage declares
exactly those to DVC, so no other param can change its model behind DVC's back.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score, log_loss
from torch import nn
from tqdm import tqdm

from clipvideo.config.declared import Declared
from clipvideo.config.schema import Params
from clipvideo.config.variants import Variant
from clipvideo.core.contracts import CURVE_COLUMNS
from clipvideo.core.errors import PipelineError
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.tables import write_table
from clipvideo.embed.store import (
    ENCODER_KEYS,
    TEXT_FILE,
    check_same_settings,
    load_embeddings,
    load_text_embeddings,
    recorded_encoder,
)
from clipvideo.modeling import exact
from clipvideo.modeling.classifiers import (
    LinearProbe,
    as_tensors,
    build_model,
    predict_proba_tensors,
    variant_inputs,
    zeroshot_model,
)
from clipvideo.modeling.data import LabelledSet, split_set
from clipvideo.modeling.saved import save_model

R = TypeVar("R")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    lr: float
    weight_decay: float
    batch_size: int
    seed: int
    mixup_alpha: float | None = None  # None: no mixup
    name: str = ""  # the variant, for the progress bar


@contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """torch seeded with `seed`, limited to deterministic algorithms and to one thread inside the block only: on
    leaving it, the caller's deterministic-algorithms setting, thread count and global random state are back.

    Same params and seed -> bit-identical weights on a rerun. One thread: the transformer's weights differ between
    1 and 2 threads otherwise (docs/models.md, "Same bytes on any x86 machine").
    """
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def seeded_by_config(function: Callable[..., R]) -> Callable[..., R]:
    """Runs `function` inside deterministic(seed of its `config` argument)."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> R:
        with deterministic(signature.bind(*args, **kwargs).arguments["config"].seed):
            return function(*args, **kwargs)

    return run


def mixup_batch(
    frames: torch.Tensor, mask: torch.Tensor, alpha: float, rng: np.random.Generator, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Embedding-level mixup: lam x + (1 - lam) x[perm], frame by frame; the mixed mask is the union.

    Returns the mixed frames and mask, the permutation (labels mix the same way) and lam.
    """
    lam = float(rng.beta(alpha, alpha))
    perm = torch.randperm(len(frames), generator=generator)
    return lam * frames + (1 - lam) * frames[perm], mask | mask[perm], perm, lam


@seeded_by_config
def train_classifier(
    model: nn.Module, frames: np.ndarray, mask: np.ndarray, labels: np.ndarray, config: TrainConfig
) -> list[dict[str, float]]:
    """AdamW on shuffled mini-batches, seeded, with optional mixup.

    Returns per epoch the mean training loss (on the mixed batches when mixup is on) and f1 (micro)
    of the model on the clean training videos, measured in eval mode after the epoch.
    """
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    x, m = as_tensors(frames, mask)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history = []
    # a line per finished epoch with its loss and train f1 (mininterval=0: every epoch, however short)
    with tqdm(total=config.epochs, desc=f"train {config.name}", unit="epoch", leave=False, mininterval=0) as bar:
        for epoch in range(1, config.epochs + 1):
            model.train()
            order = torch.randperm(len(y), generator=generator)
            total_loss = 0.0
            for start in range(0, len(y), config.batch_size):
                batch = order[start : start + config.batch_size]
                if config.mixup_alpha is None:
                    loss = F.cross_entropy(model(x[batch], m[batch]), y[batch])
                else:
                    mixed, mixed_mask, perm, lam = mixup_batch(x[batch], m[batch], config.mixup_alpha, rng, generator)
                    logits = model(mixed, mixed_mask)
                    loss = lam * F.cross_entropy(logits, y[batch]) + (1 - lam) * F.cross_entropy(logits, y[batch][perm])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total_loss += loss.item() * len(batch)
            predicted = predict_proba_tensors(model, x, m).argmax(1)
            history.append(
                {
                    "epoch": epoch,
                    "loss": round(total_loss / len(y), 6),
                    "f1": round(float(f1_score(labels, predicted, average="micro")), 6),
                }
            )
            bar.set_postfix({"loss": f"{history[-1]['loss']:.4f}", "f1": f"{history[-1]['f1']:.3f}"}, refresh=False)
            bar.update()
    model.eval()
    return history


def fit_logreg(
    frames: np.ndarray, mask: np.ndarray, labels: np.ndarray, n_classes: int, c: float, max_iter: int
) -> tuple[LinearProbe, list[dict[str, float]]]:
    """Logistic regression on the standardised mean embedding, folded into a LinearProbe.

    The model scikit-learn's LogisticRegression(C=c, max_iter=max_iter) fits (multinomial; with two categories
    its one-row binary model), solved in exact arithmetic (modeling.exact) so the weights are the same bytes
    whatever BLAS kernel, SIMD level or thread count the machine has. Standardising is folded into the weights
    (w / sd, b - w . mean / sd). Returns the model and its fit record (one row).
    """
    present = np.unique(labels)
    if len(present) < 2:
        raise PipelineError(f"logreg: the training videos hold only {len(present)} category; it needs at least 2")
    features = exact_mean_embedding(frames, mask)
    center = exact.tree_sum(features, axis=0) / len(features)
    deviation = features - center
    scale = np.sqrt(exact.tree_sum(deviation * deviation, axis=0) / len(features))
    scale[scale == 0] = 1.0
    fitted = exact.fit_softmax_regression(
        deviation / scale, np.searchsorted(present, labels), len(present), c, max_iter
    )
    weight = np.zeros((n_classes, features.shape[1]))
    bias = np.full(n_classes, -1e4)  # a category absent from training is never predicted
    weight[present] = fitted.coef / scale
    bias[present] = fitted.intercept - exact.matmul(weight[present], center[:, None])[:, 0]
    with deterministic(0), torch.no_grad():  # its random initial weights are replaced: no seed to declare
        model = LinearProbe(features.shape[1], n_classes)
        model.head.weight.copy_(torch.from_numpy(weight))
        model.head.bias.copy_(torch.from_numpy(bias))
        record = fit_record(model, *as_tensors(frames, mask), labels)
    return model, [record]


def exact_mean_embedding(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """LinearProbe's input feature (the mean of the L2-normalised real frames), in modeling.exact's arithmetic,
    64 videos at a time (float64 copies of all the frames at once would be 4x their float16 size)."""
    parts = []
    for start in range(0, len(frames), 64):
        x = np.asarray(frames[start : start + 64], dtype=np.float64)
        norm = np.sqrt(exact.tree_sum(x * x, axis=-1))[..., None]
        weights = np.asarray(mask[start : start + 64], dtype=np.float64)[..., None]
        total = exact.tree_sum(x / np.maximum(norm, 1e-12) * weights, axis=1)
        parts.append(total / np.maximum(exact.tree_sum(weights, axis=1), 1.0))
    return np.concatenate(parts)


def fit_record(model: nn.Module, x: torch.Tensor, m: torch.Tensor, labels: np.ndarray) -> dict[str, float]:
    """Training-set loss and f1 (micro) of a model fitted in one go (logreg, zeroshot), on as_tensors' tensors: for
    its summary line, not a curve (one point is not one)."""
    probabilities = predict_proba_tensors(model, x, m)
    return {
        "loss": round(float(log_loss(labels, probabilities, labels=range(probabilities.shape[1]))), 6),
        "f1": round(float(f1_score(labels, probabilities.argmax(1), average="micro")), 6),
    }


def zeroshot_classifier(paths: ProjectPaths, data: LabelledSet, frames_encoder: dict[str, Any]) -> nn.Module:
    """The prompt embeddings as a classifier; they must come from the encoder that embedded the frames."""
    text = load_text_embeddings(paths.text_dir)
    check_same_settings(text.encoder, frames_encoder, ENCODER_KEYS, str(paths.text_dir), "prompts embedded with",
                        "the frames'", "rerun dvc repro")  # fmt: skip
    return zeroshot_model(text.for_categories(data.categories, paths.text_dir / TEXT_FILE))


def fit(spec: Variant, data: LabelledSet, frames: np.ndarray, mask: np.ndarray, params: Params | Declared,
        name: str = "") -> tuple[nn.Module, dict[str, Any], list[dict[str, float]]]:  # fmt: skip
    """The fitted module, the options needed to rebuild it, and its training curve (logreg and torch kinds).

    `params` lets through only the keys the variant declares, so reading any other fails here, not silently.
    """
    if spec.kind == "logreg":
        logreg = params.train.logreg
        model, history = fit_logreg(frames, mask, data.labels, len(data.categories), logreg.C, logreg.max_iter)
        return model, {}, history
    optim = params.train.optim
    options = params.train.transformer.model_dump() if spec.kind == "transformer" else {}
    with deterministic(params.seed):  # the initial weights
        model = build_model(spec.kind, frames.shape[-1], len(data.categories), options)
    config = TrainConfig(
        epochs=optim.epochs,
        lr=optim.lr,
        weight_decay=optim.weight_decay,
        batch_size=optim.batch_size,
        seed=params.seed,
        mixup_alpha=params.train.mixup.alpha if spec.mixup else None,
        name=name,
    )
    return model, options, train_classifier(model, frames, mask, data.labels, config)


def train_variant(paths: ProjectPaths, name: str, spec: Variant, params: Declared) -> str:
    """models/<name>.pt and, for a variant trained epoch by epoch, plots/train/<name>.csv from the train split's
    embeddings; returns the summary line."""
    embeddings = load_embeddings(paths.embeddings_dir)
    data = split_set(paths, "train", embeddings)
    frames, mask = variant_inputs(spec, data.frames, data.mask, data.ids)
    encoder = recorded_encoder(embeddings.meta)
    if spec.kind == "zeroshot":
        model, options = zeroshot_classifier(paths, data, encoder), {}
        history = [fit_record(model, *as_tensors(frames, mask), data.labels)]
    else:
        model, options, history = fit(spec, data, frames, mask, params, name)
    save_model(paths.model_file(name), name, spec.kind, model, data.categories, options, encoder)
    if spec.has_curve:
        write_table(paths.training_curve_file(name), CURVE_COLUMNS, history)
    last = history[-1]
    dropped = f", {data.dropped} without frames skipped" if data.dropped else ""
    return (
        f"{name}: {len(data.ids)} train videos{dropped}, final train loss {last['loss']:.4f}, "
        f"train f1 {last['f1']:.3f} -> {paths.model_file(name)}"
    )
