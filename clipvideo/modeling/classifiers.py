"""The classifier kinds (a registry: variants.yaml names them), all called the same way: `model(frames, mask)`
-> logits. A scikit-learn logistic regression or a zero-shot text classifier is such a module too, so evaluate
and predict treat every variant alike.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clipvideo.config.variants import Variant
from clipvideo.core.errors import PipelineError

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


# The registry of classifier kinds (variants.yaml `kind`): each builds its module from the embedding size, the
# number of categories and its own options (the transformer's hyper-parameters; the others take none).
KINDS: dict[str, Callable[..., nn.Module]] = {
    "linear": LinearProbe,
    "transformer": TransformerProbe,
    "logreg": LinearProbe,  # fitted by scikit-learn, folded into a linear layer
    "zeroshot": ZeroShotProbe,  # not trained: its head is the prompt embeddings
}


def build_model(kind: str, dim: int, n_classes: int, options: dict[str, Any] | None = None) -> nn.Module:
    """A fresh module of `kind`; `options` are its own hyper-parameters."""
    return KINDS[kind](dim, n_classes, **(options or {}))


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


def zeroshot_model(text_embeddings: np.ndarray) -> ZeroShotProbe:
    """No training: the head is the normalised prompt embedding of each category, times CLIP's scale."""
    text = torch.from_numpy(np.asarray(text_embeddings, dtype=np.float32))
    model = ZeroShotProbe(text.shape[1], text.shape[0])
    with torch.no_grad():
        model.head.weight.copy_(ZERO_SHOT_SCALE * F.normalize(text, dim=-1))
        model.head.bias.zero_()
    return model.eval()


def as_tensors(frames: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.asarray(frames, dtype=np.float32)), torch.from_numpy(np.asarray(mask, dtype=bool))


def predict_proba(model: nn.Module, frames: np.ndarray, mask: np.ndarray, batch_size: int = 256) -> np.ndarray:
    return predict_proba_tensors(model, *as_tensors(frames, mask), batch_size=batch_size)


@torch.inference_mode()
def predict_proba_tensors(model: nn.Module, x: torch.Tensor, m: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """predict_proba on as_tensors' tensors (a caller that holds them does not convert the frames again)."""
    was_training = model.training
    model.eval()
    out = [
        torch.softmax(model(x[i : i + batch_size], m[i : i + batch_size]).double(), dim=1)
        for i in range(0, len(x), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out).cpu().numpy() if out else np.zeros((0, 0))
