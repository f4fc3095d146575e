"""The stored embeddings, read by the light stages: NumPy and JSON only (never open_clip or torch).

data/embeddings/: one float16 array (videos x frames x dim), `index.csv` (id, n_frames: the mask) and
`meta.json` (every setting the embeddings depend on). data/text/: the category prompt embeddings, the zeroshot
classifier. Both record the encoder that made them, and a consumer checks it against what it expects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipvideo.config.schema import EmbedParams
from clipvideo.core.contracts import EMBEDDINGS_INDEX_COLUMNS, FRAMES_DECODER_KEY, FRAMES_SETTINGS_KEYS
from clipvideo.core.errors import PipelineError
from clipvideo.core.files import atomic_directory
from clipvideo.core.tables import read_table

ARRAY = "frames.npy"
INDEX = "index.csv"
META = "meta.json"
TEXT_FILE = "text.npz"
TEXT_META = "meta.json"

# The encoder settings, as meta.json keys -> the params.yaml key each comes from (embed and embed_text declare them).
ENCODER_KEYS = {
    "model": "embed.model",
    "pretrained": "embed.pretrained",
    "precision": "embed.precision",
    "seed": "embed.seed",  # None for pretrained weights (encoder_seed)
    "model_sha256": "embed.model's file",  # a model config file's content ("" for an open_clip name)
    "pretrained_sha256": "embed.pretrained's file",  # a checkpoint file's content ("" for a tag or none)
}
# Everything besides the video that decides its embeddings: the encoder's and the frames' settings (copied from
# data/frames/settings.json). Recorded in meta.json, copied into every trained model, checked by predict.
EMBEDDING_KEYS = {**ENCODER_KEYS, **FRAMES_SETTINGS_KEYS}


def encoder_seed(embed: EmbedParams) -> int | None:
    """embed.seed where it decides the encoder (pretrained `none`: the random init); None for pretrained weights,
    which no seed changes (so no seed is recorded for them, nor splits their cache)."""
    return embed.seed if embed.pretrained == "none" else None


def encoder_record(embed: EmbedParams, identity: Mapping[str, Any]) -> dict[str, Any]:
    """The ENCODER_KEYS values of these params; `identity` is their encoder_identity (the model's open_clip name,
    a config or checkpoint file's SHA-256, computed once there)."""
    weights = str(identity["weights"])
    return {
        "model": identity["model"],
        "pretrained": embed.pretrained,
        "precision": embed.precision,
        "seed": encoder_seed(embed),
        "model_sha256": identity["config"],
        "pretrained_sha256": weights.removeprefix("sha256:") if weights.startswith("sha256:") else "",
    }


def recorded_encoder(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The EMBEDDING_KEYS values an embeddings meta.json records (None where it predates a key): what a model keeps."""
    return {key: meta.get(key) for key in EMBEDDING_KEYS}


def check_same_settings(
    recorded: Mapping[str, Any],
    current: Mapping[str, Any],
    keys: Mapping[str, str],
    where: str,
    recorded_as: str,
    current_as: str,
    fix: str,
) -> None:
    """Stop when `recorded` (what made a file) and `current` (what its consumer expects) differ in any of `keys`
    (meta key -> params.yaml key), naming each difference: results made two ways must never be mixed."""
    differs = [key for key in keys if recorded.get(key) != current.get(key)]
    if differs:
        named = ", ".join(f"{keys[k]} {recorded.get(k)!r} ({current_as}: {current.get(k)!r})" for k in differs)
        raise PipelineError(f"{where}: {recorded_as} {named}; {fix}")


def frames_settings(path: Path) -> dict[str, Any]:
    """The settings the frames stage recorded next to the frames it made (data/frames/settings.json)."""
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"{path}: missing; rerun the frames stage") from None
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path}: not readable JSON ({type(exc).__name__}); rerun the frames stage") from None
    if not isinstance(recorded, dict) or set(recorded) != {*FRAMES_SETTINGS_KEYS, FRAMES_DECODER_KEY}:
        raise PipelineError(f"{path}: expected the keys {', '.join(FRAMES_SETTINGS_KEYS)}; rerun the frames stage")
    return recorded


@dataclass
class EmbeddingSet:
    ids: list[str]
    frames: np.ndarray  # (videos, max_frames, dim) float16
    n_frames: np.ndarray  # (videos,) int
    meta: dict

    @property
    def mask(self) -> np.ndarray:
        return np.arange(self.frames.shape[1])[None, :] < self.n_frames[:, None]

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        position = {video_id: i for i, video_id in enumerate(self.ids)}
        missing = [i for i in ids if i not in position]
        if missing:
            raise PipelineError(f"embeddings: no embedding for video {missing[0]!r}; rerun the embed stage")
        return np.array([position[i] for i in ids], dtype=np.int64)


def load_embeddings(directory: Path, mmap: bool = True) -> EmbeddingSet:
    if not (directory / ARRAY).is_file():
        raise PipelineError(f"{directory}: no embeddings; run the embed stage first (dvc repro)")
    index = read_table(directory / INDEX, EMBEDDINGS_INDEX_COLUMNS)
    frames = np.load(directory / ARRAY, mmap_mode="r" if mmap else None)
    meta = json.loads((directory / META).read_text(encoding="utf-8"))
    return EmbeddingSet(
        ids=[row["id"] for row in index],
        frames=frames,
        n_frames=np.array([int(row["n_frames"]) for row in index], dtype=np.int64),
        meta=meta,
    )


@dataclass
class TextEmbeddings:
    categories: list[str]
    templates: list[str]
    vectors: np.ndarray  # (categories, dim) float32, unit length
    encoder: dict[str, Any]  # the ENCODER_KEYS values of the encoder that embedded them

    def for_categories(self, categories: Sequence[str], source: Path) -> np.ndarray:
        """Rows in the order of `categories` (the split's); every one must have a prompt."""
        missing = [c for c in categories if c not in self.categories]
        if missing:
            raise PipelineError(
                f"{source}: no prompt embedding for category {missing[0]!r} (embedded: "
                f"{', '.join(self.categories)}); add it to dataset.categories and rerun embed_text"
            )
        return self.vectors[[self.categories.index(c) for c in categories]]


def save_text_embeddings(directory: Path, text: TextEmbeddings) -> None:
    """`directory` (text.npz and meta.json) is replaced whole, or not at all."""
    with atomic_directory(directory) as tmp:
        with (tmp / TEXT_FILE).open("wb") as handle:
            np.savez(
                handle, categories=np.array(text.categories), templates=np.array(text.templates), vectors=text.vectors
            )
        (tmp / TEXT_META).write_text(json.dumps({"encoder": text.encoder}, indent=2) + "\n", encoding="utf-8")


def load_text_embeddings(directory: Path) -> TextEmbeddings:
    path = directory / TEXT_FILE
    if not path.is_file() or not (directory / TEXT_META).is_file():
        raise PipelineError(f"{path}: no prompt embeddings; run the embed_text stage first (dvc repro embed_text)")
    meta = json.loads((directory / TEXT_META).read_text(encoding="utf-8"))
    with np.load(path) as stored:
        return TextEmbeddings(
            [str(c) for c in stored["categories"]],
            [str(t) for t in stored["templates"]],
            stored["vectors"],
            meta["encoder"],
        )
