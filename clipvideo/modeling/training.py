"""Training a variant on the stored train embeddings: seeded, deterministic, one epoch at a time with progress.

A variant sees only the params it declares in variants.yaml (config.declared): its train stage declares
exactly those to DVC, so no other param can change its model behind DVC's back.
"""

from __future__ import annotations

import functools
import inspect
import os
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
from clipvideo.core.system import torch_device
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
    device: str = "cpu"  # where the model and the tensors live (the batch order is drawn on the CPU either way)


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
    perm = torch.randperm(len(frames), generator=generator).to(frames.device)
    return lam * frames + (1 - lam) * frames[perm], mask | mask[perm], perm, lam


@dataclass(frozen=True)
class Held:
    """The val videos, on which each epoch is scored and the kept one chosen (test is never looked at here)."""

    frames: np.ndarray
    mask: np.ndarray
    labels: np.ndarray


def scored(model: nn.Module, x: torch.Tensor, m: torch.Tensor, labels: np.ndarray) -> tuple[float, float]:
    """Cross-entropy and f1 (micro) of the model on these videos, in eval mode."""
    probabilities = predict_proba_tensors(model, x, m)
    loss = log_loss(labels, probabilities, labels=range(probabilities.shape[1]))
    return round(float(loss), 6), round(float(f1_score(labels, probabilities.argmax(1), average="micro")), 6)


def best_epoch(history: list[dict[str, Any]]) -> int:
    """The epoch kept: the best val f1 (micro), then the lowest val loss, then the earliest; the last without val."""
    if history[0]["val_f1"] == "":
        return history[-1]["epoch"]
    return min(history, key=lambda row: (-row["val_f1"], row["val_loss"], row["epoch"]))["epoch"]


@seeded_by_config
def train_classifier(
    model: nn.Module,
    frames: np.ndarray,
    mask: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    val: Held | None = None,
) -> list[dict[str, Any]]:
    """AdamW on shuffled mini-batches, seeded, with optional mixup; the model ends with the weights of the epoch
    best_epoch chooses on `val`.

    Returns per epoch the mean training loss (on the mixed batches when mixup is on), f1 (micro) of the model on
    the clean training videos, and val loss and f1 ("" without val videos), measured in eval mode after the epoch.
    """
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = torch.device(config.device)
    model.to(device)
    x, m = (t.to(device) for t in as_tensors(frames, mask))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
    held = None
    if val is not None and len(val.labels):
        held = tuple(t.to(device) for t in as_tensors(val.frames, val.mask))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history: list[dict[str, Any]] = []
    kept: dict[str, torch.Tensor] = {}
    # a line per finished epoch with its loss and f1 (mininterval=0: every epoch, however short)
    with tqdm(total=config.epochs, desc=f"train {config.name}", unit="epoch", leave=False, mininterval=0) as bar:
        for epoch in range(1, config.epochs + 1):
            model.train()
            order = torch.randperm(len(y), generator=generator).to(device)
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
            val_loss, val_f1 = scored(model, *held, val.labels) if held is not None else ("", "")
            history.append(
                {
                    "epoch": epoch,
                    "loss": round(total_loss / len(y), 6),
                    "f1": round(float(f1_score(labels, predicted, average="micro")), 6),
                    "val_loss": val_loss,
                    "val_f1": val_f1,
                }
            )
            if best_epoch(history) == epoch:
                kept = {name: value.detach().clone() for name, value in model.state_dict().items()}
            shown = {"loss": f"{history[-1]['loss']:.4f}", "f1": f"{history[-1]['f1']:.3f}"}
            if held is not None:
                shown["val_f1"] = f"{val_f1:.3f}"
            bar.set_postfix(shown, refresh=False)
            bar.update()
    model.load_state_dict(kept)
    model.to("cpu").eval()  # saved and evaluated on the CPU, wherever it trained
    return history


def fit_logreg(
    frames: np.ndarray, mask: np.ndarray, labels: np.ndarray, n_classes: int, c: float, max_iter: int
) -> LinearProbe:
    """Logistic regression on the standardised mean embedding, folded into a LinearProbe.

    The model scikit-learn's LogisticRegression(C=c, max_iter=max_iter) fits (multinomial; with two categories
    its one-row binary model), solved in exact arithmetic (modeling.exact) so the weights are the same bytes
    whatever BLAS kernel, SIMD level or thread count the machine has. Standardising is folded into the weights
    (w / sd, b - w . mean / sd).
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
    return model


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


def fit_record(
    model: nn.Module, x: torch.Tensor, m: torch.Tensor, labels: np.ndarray, val: Held | None
) -> dict[str, Any]:
    """Training-set and val loss and f1 (micro) of a model fitted in one go (logreg, zeroshot), on as_tensors'
    tensors: for its summary line, not a curve (one point is not one)."""
    loss, f1 = scored(model, x, m, labels)
    val_loss, val_f1 = scored(model, *as_tensors(val.frames, val.mask), val.labels) if val else ("", "")
    return {"epoch": 1, "loss": loss, "f1": f1, "val_loss": val_loss, "val_f1": val_f1}


def zeroshot_classifier(paths: ProjectPaths, data: LabelledSet, frames_encoder: dict[str, Any]) -> nn.Module:
    """The prompt embeddings as a classifier; they must come from the encoder that embedded the frames."""
    text = load_text_embeddings(paths.text_dir)
    check_same_settings(
        text.encoder,
        frames_encoder,
        ENCODER_KEYS,
        str(paths.text_dir),
        "prompts embedded with",
        "the frames'",
        "rerun dvc repro",
    )
    return zeroshot_model(text.for_categories(data.categories, paths.text_dir / TEXT_FILE))


def fit(
    spec: Variant,
    data: LabelledSet,
    frames: np.ndarray,
    mask: np.ndarray,
    params: Params | Declared,
    name: str = "",
    val: Held | None = None,
    device: str = "cpu",
) -> tuple[nn.Module, dict[str, Any], list[dict[str, Any]]]:
    """The fitted module, the options needed to rebuild it, and its training curve (logreg and torch kinds).

    `params` lets through only the keys the variant declares, so reading any other fails here, not silently.
    """
    if spec.kind == "logreg":
        logreg = params.train.logreg
        model = fit_logreg(frames, mask, data.labels, len(data.categories), logreg.C, logreg.max_iter)
        return model, {}, [fit_record(model, *as_tensors(frames, mask), data.labels, val)]
    optim = params.train.optim
    options = params.train.transformer.model_dump() if spec.kind == "transformer" else {}
    with deterministic(params.train.seed):  # the initial weights
        model = build_model(spec.kind, frames.shape[-1], len(data.categories), options)
    config = TrainConfig(
        epochs=optim.epochs,
        lr=optim.lr,
        weight_decay=optim.weight_decay,
        batch_size=optim.batch_size,
        seed=params.train.seed,
        mixup_alpha=params.train.mixup.alpha if spec.mixup else None,
        name=name,
        device=device,
    )
    return model, options, train_classifier(model, frames, mask, data.labels, config, val)


def held_out(spec: Variant, data: LabelledSet | None) -> Held | None:
    """The val videos as the variant sees them (one frame for random_frame), or None without any."""
    if data is None:
        return None
    return Held(*variant_inputs(spec, data.frames, data.mask, data.ids), data.labels)


def training_device(spec: Variant, setting: str) -> str:
    """Where the variant trains: settings.yaml's train.device for the torch kinds (logreg and zeroshot are fitted in
    exact arithmetic on the CPU). On CUDA, cuBLAS gets the workspace its deterministic mode needs."""
    if not spec.has_curve:
        return "cpu"
    device = torch_device(setting, "train.device").type
    if device == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return device


def train_variant(paths: ProjectPaths, name: str, spec: Variant, params: Declared, device_setting: str = "cpu") -> str:
    """models/<name>.pt and, for a variant trained epoch by epoch, plots/train/<name>.csv from the train split's
    embeddings, keeping the epoch best on the val split's; returns the summary line. The device it trained on is
    recorded in the model's selection, which evaluate copies into reports/<name>.json."""
    device = training_device(spec, device_setting)
    embeddings = load_embeddings(paths.embeddings_dir)
    data = split_set(paths, "train", embeddings)
    val_data = split_set(paths, "val", embeddings, required=False)
    val = held_out(spec, val_data)
    frames, mask = variant_inputs(spec, data.frames, data.mask, data.ids)
    encoder = recorded_encoder(embeddings.meta)
    if spec.kind == "zeroshot":
        model, options = zeroshot_classifier(paths, data, encoder), {}
        history = [fit_record(model, *as_tensors(frames, mask), data.labels, val)]
    else:
        model, options, history = fit(spec, data, frames, mask, params, name, val, device)
    kept = history[best_epoch(history) - 1]
    selection = {
        "epoch": kept["epoch"],
        "epochs": len(history),
        "val_videos": 0 if val is None else len(val.labels),
        "val_f1_micro": kept["val_f1"],
        "device": device,
    }
    save_model(paths.model_file(name), name, spec.kind, model, data.categories, options, encoder, selection)
    if spec.has_curve:
        write_table(paths.training_curve_file(name), CURVE_COLUMNS, history)
    dropped = f", {data.dropped} without frames skipped" if data.dropped else ""
    chosen = (
        f"kept epoch {kept['epoch']} of {len(history)}, val f1 {kept['val_f1']:.3f} on {len(val.labels)} val videos"
        if val is not None
        else f"no val videos: kept the last of {len(history)} epochs"
    )
    return (
        f"{name}: {len(data.ids)} train videos{dropped} on {device}, {chosen}, train loss {kept['loss']:.4f}, "
        f"train f1 {kept['f1']:.3f} -> {paths.model_file(name)}"
    )
