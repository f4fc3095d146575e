"""Classifiers over stored frame embeddings: the variants' models (variants.yaml), training, saving and loading.

Every variant ends as a torch module with the same call, `model(frames, mask) -> logits`, and is
saved the same way, so evaluate and predict treat a scikit-learn logistic regression or a
zero-shot text classifier exactly like a trained network.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, log_loss
from torch import nn

from clipvideo.errors import PipelineError
from clipvideo.files import write_bytes_atomic
from clipvideo.variants import VARIANTS, Variant

# CLIP's own logit scale (exp of its learned temperature at the end of training): zero-shot logits
# are 100 x cosine similarity, which is what makes its softmax probabilities comparable.
ZERO_SHOT_SCALE = 100.0


def masked_mean(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real frames only; padded frames carry no weight."""
    weights = mask.unsqueeze(-1).to(frames.dtype)
    return (frames * weights).sum(1) / weights.sum(1).clamp_min(1)


class LinearProbe(nn.Module):
    """Mean of the L2-normalised frame embeddings -> one linear layer (linear, random_frame, logreg)."""

    def __init__(self, dim: int, n_classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(dim, n_classes)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(masked_mean(F.normalize(frames, dim=-1), mask))


class ZeroShotProbe(LinearProbe):
    """Cosine similarity of the video (normalised mean frame) to each category's prompt embedding."""

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(F.normalize(masked_mean(F.normalize(frames, dim=-1), mask), dim=-1))


def sinusoidal_encoding(length: int, dim: int) -> torch.Tensor:
    """The fixed sine/cosine position code of "Attention is all you need", (length, dim)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    code = torch.zeros(length, dim)
    code[:, 0::2] = torch.sin(position * frequency)
    code[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return code


class TransformerProbe(nn.Module):
    """Frames + position code -> encoder layers that ignore padded frames -> masked mean -> linear."""

    def __init__(self, dim: int, n_classes: int, layers: int, heads: int, dropout: float, ff_dim: int) -> None:
        super().__init__()
        if dim % heads:
            raise PipelineError(f"params.yaml: train.transformer.heads={heads}: must divide the embedding size {dim}")
        self.dim = dim
        layer = nn.TransformerEncoderLayer(dim, heads, ff_dim, dropout, batch_first=True, norm_first=True)
        # No nested tensors: the padded batch then runs the same kernels as one unpadded sequence.
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Unit-norm embeddings scaled to unit size per dimension, the same scale as the position code.
        x = F.normalize(frames, dim=-1) * math.sqrt(self.dim)
        x = x + sinusoidal_encoding(x.shape[1], self.dim).to(x.dtype)
        encoded = self.encoder(x, src_key_padding_mask=~mask)
        return self.head(masked_mean(encoded, mask))


def build_model(kind: str, dim: int, n_classes: int, options: dict[str, Any] | None = None) -> nn.Module:
    """A fresh module of `kind`; `options` are the transformer's hyper-parameters."""
    if kind == "transformer":
        return TransformerProbe(dim, n_classes, **(options or {}))
    if kind == "zeroshot":
        return ZeroShotProbe(dim, n_classes)
    return LinearProbe(dim, n_classes)


def stable_frame_index(video_id: str, n_frames: int) -> int:
    """The one frame random_frame uses: from SHA-256 of the id, so the same on every run and machine."""
    digest = hashlib.sha256(video_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % int(n_frames)


def one_frame_view(frames: np.ndarray, mask: np.ndarray, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each video reduced to its stable frame: (videos, 1, dim) and an all-true mask."""
    n_frames = mask.sum(1)
    chosen = np.array([stable_frame_index(v, int(n)) for v, n in zip(ids, n_frames, strict=True)], dtype=np.int64)
    picked = np.asarray(frames)[np.arange(len(ids)), chosen][:, None, :]
    return picked, np.ones((len(ids), 1), dtype=bool)


def variant_inputs(
    variant: Variant, frames: np.ndarray, mask: np.ndarray, ids: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """What the variant sees of each video: all its frames, or only its stable one."""
    return one_frame_view(frames, mask, ids) if variant.one_frame else (frames, mask)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    lr: float
    weight_decay: float
    batch_size: int
    seed: int
    mixup_alpha: float | None = None  # None: no mixup


def make_deterministic(seed: int) -> None:
    """Same params and seed -> bit-identical weights on a rerun on the same machine."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def as_tensors(frames: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.asarray(frames, dtype=np.float32)), torch.from_numpy(np.asarray(mask, dtype=bool))


def mixup_batch(
    frames: torch.Tensor, mask: torch.Tensor, alpha: float, rng: np.random.Generator, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Embedding-level mixup: lam x + (1 - lam) x[perm], frame by frame; the mixed mask is the union.

    Returns the mixed frames and mask, the permutation (labels mix the same way) and lam.
    """
    lam = float(rng.beta(alpha, alpha))
    perm = torch.randperm(len(frames), generator=generator)
    return lam * frames + (1 - lam) * frames[perm], mask | mask[perm], perm, lam


def train_classifier(
    model: nn.Module, frames: np.ndarray, mask: np.ndarray, labels: np.ndarray, config: TrainConfig
) -> list[dict[str, float]]:
    """AdamW on shuffled mini-batches, seeded, with optional mixup.

    Returns per epoch the mean training loss (on the mixed batches when mixup is on) and f1 (micro)
    of the model on the clean training videos, measured in eval mode after the epoch.
    """
    make_deterministic(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    x, m = as_tensors(frames, mask)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history = []
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
        predicted = predict_proba(model, frames, mask).argmax(1)
        history.append(
            {
                "epoch": epoch,
                "loss": round(total_loss / len(y), 6),
                "f1": round(float(f1_score(labels, predicted, average="micro")), 6),
            }
        )
    model.eval()
    return history


def fit_logreg(
    frames: np.ndarray, mask: np.ndarray, labels: np.ndarray, n_classes: int, c: float, max_iter: int
) -> tuple[LinearProbe, list[dict[str, float]]]:
    """scikit-learn logistic regression on the standardised mean embedding, folded into a LinearProbe.

    Standardising is folded into the weights (w / sd, b - w . mean / sd), so the module gives the
    same probabilities as the fitted scikit-learn pipeline. Returns the model and one record row.
    """
    x, m = as_tensors(frames, mask)
    with torch.no_grad():
        features = masked_mean(F.normalize(x, dim=-1), m).double().numpy()
    center = features.mean(0)
    scale = features.std(0)
    scale[scale == 0] = 1.0
    present = np.unique(labels)
    if len(present) < 2:
        raise PipelineError(f"logreg: the training videos hold only {len(present)} category; it needs at least 2")
    classifier = LogisticRegression(C=c, max_iter=max_iter)
    classifier.fit((features - center) / scale, labels)
    coef, intercept = classifier.coef_, classifier.intercept_
    if len(present) == 2:  # scikit-learn keeps one row for two classes: p1 = sigmoid(z) = softmax([0, z])
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    weight = np.zeros((n_classes, features.shape[1]))
    bias = np.full(n_classes, -1e4)  # a category absent from training is never predicted
    weight[present] = coef / scale
    bias[present] = intercept - (coef / scale) @ center
    model = LinearProbe(features.shape[1], n_classes)
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(weight))
        model.head.bias.copy_(torch.from_numpy(bias))
    return model, [fit_record(model, frames, mask, labels, epoch=int(np.max(classifier.n_iter_)))]


def zeroshot_model(text_embeddings: np.ndarray) -> ZeroShotProbe:
    """No training: the head is the normalised prompt embedding of each category, times CLIP's scale."""
    text = torch.from_numpy(np.asarray(text_embeddings, dtype=np.float32))
    model = ZeroShotProbe(text.shape[1], text.shape[0])
    with torch.no_grad():
        model.head.weight.copy_(ZERO_SHOT_SCALE * F.normalize(text, dim=-1))
        model.head.bias.zero_()
    return model.eval()


def fit_record(model: nn.Module, frames: np.ndarray, mask: np.ndarray, labels: np.ndarray, epoch: int) -> dict:
    """Training-set loss and f1 (micro) of a model fitted in one go: its one-row training curve."""
    probabilities = predict_proba(model, frames, mask)
    return {
        "epoch": epoch,
        "loss": round(float(log_loss(labels, probabilities, labels=range(probabilities.shape[1]))), 6),
        "f1": round(float(f1_score(labels, probabilities.argmax(1), average="micro")), 6),
    }


@torch.inference_mode()
def predict_proba(model: nn.Module, frames: np.ndarray, mask: np.ndarray, batch_size: int = 256) -> np.ndarray:
    was_training = model.training
    model.eval()
    x, m = as_tensors(frames, mask)
    out = [
        torch.softmax(model(x[i : i + batch_size], m[i : i + batch_size]).double(), dim=1)
        for i in range(0, len(x), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


@dataclass
class SavedModel:
    variant: str
    model: nn.Module
    categories: list[str]
    encoder: dict[str, Any]  # the encoder and frame settings of the embeddings it was trained on

    @property
    def spec(self) -> Variant:
        return VARIANTS[self.variant]


def save_model(
    path: Path, variant: str, model: nn.Module, categories: list[str], options: dict, encoder: dict[str, Any]
) -> None:
    """Everything needed to rebuild the module without params.yaml: kind, sizes, options, weights."""
    head = model.head
    record = {
        "variant": variant,
        "kind": VARIANTS[variant].kind,
        "dim": head.in_features,
        "categories": categories,
        "options": options,
        "encoder": encoder,
        "state_dict": model.state_dict(),
    }
    buffer = io.BytesIO()  # torch names the archive after the file: a buffer keeps the bytes reproducible
    torch.save(record, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def load_model(path: Path, variant: str) -> SavedModel:
    if not path.is_file():
        raise PipelineError(f"{path}: no trained model for variant {variant!r}; run `dvc repro train@{variant}` first")
    try:
        record = torch.load(path, weights_only=True)
        model = build_model(record["kind"], record["dim"], len(record["categories"]), record["options"])
        model.load_state_dict(record["state_dict"])
    except (OSError, RuntimeError, KeyError, TypeError, EOFError) as exc:
        raise PipelineError(f"{path}: not a model file this code wrote ({type(exc).__name__}); rerun train") from exc
    return SavedModel(record["variant"], model.eval(), record["categories"], record["encoder"])
