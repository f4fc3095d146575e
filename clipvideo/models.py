"""Classifiers over stored frame embeddings, and the training loop they share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch import nn


def masked_mean(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real frames only; padded frames carry no weight."""
    weights = mask.unsqueeze(-1).to(frames.dtype)
    return (frames * weights).sum(1) / weights.sum(1).clamp_min(1)


class LinearProbe(nn.Module):
    """Mean of the L2-normalised frame embeddings -> one linear layer."""

    def __init__(self, dim: int, n_classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(dim, n_classes)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(masked_mean(F.normalize(frames, dim=-1), mask))


MODEL_KINDS = {"linear": LinearProbe}


def build_model(kind: str, dim: int, n_classes: int) -> nn.Module:
    return MODEL_KINDS[kind](dim, n_classes)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    lr: float
    weight_decay: float
    batch_size: int
    seed: int


def as_tensors(frames: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.asarray(frames, dtype=np.float32)), torch.from_numpy(np.asarray(mask, dtype=bool))


def train_classifier(
    model: nn.Module, frames: np.ndarray, mask: np.ndarray, labels: np.ndarray, config: TrainConfig
) -> list[dict[str, float]]:
    """Adam on shuffled mini-batches, seeded; returns loss and train f1 (micro) per epoch."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    x, m = as_tensors(frames, mask)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(y), generator=generator)
        total_loss = 0.0
        predictions = torch.empty_like(y)
        for start in range(0, len(y), config.batch_size):
            batch = order[start : start + config.batch_size]
            logits = model(x[batch], m[batch])
            loss = F.cross_entropy(logits, y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(batch)
            predictions[batch] = logits.argmax(1).detach()
        history.append(
            {
                "epoch": epoch,
                "loss": round(total_loss / len(y), 6),
                "f1": round(float(f1_score(y.numpy(), predictions.numpy(), average="micro")), 6),
            }
        )
    model.eval()
    return history


@torch.inference_mode()
def predict_proba(model: nn.Module, frames: np.ndarray, mask: np.ndarray, batch_size: int = 256) -> np.ndarray:
    model.eval()
    x, m = as_tensors(frames, mask)
    out = [
        torch.softmax(model(x[i : i + batch_size], m[i : i + batch_size]), dim=1) for i in range(0, len(x), batch_size)
    ]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)
