"""CLIP text embeddings of the category prompts: the zeroshot variant's classifier (the embed_text stage).

The zeroshot variant assigns a video to the category whose prompt embedding is nearest. With several
templates, each category's vector is their average as open_clip's zero-shot classifier builder makes it:
every prompt embedding normalised, the mean over the templates, normalised again. The vectors live in
their own stage's output (data/text/), so a prompt change re-embeds a few sentences, not every frame.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipvideo.clip import ClipEncoder, encode_texts
from clipvideo.errors import PipelineError
from clipvideo.files import atomic_path

TEXT_FILE = "text.npz"
META_FILE = "meta.json"


@dataclass
class TextEmbeddings:
    categories: list[str]
    templates: list[str]
    vectors: np.ndarray  # (categories, dim) float32, unit length
    encoder: dict[str, Any]  # the encoder settings (clipvideo.embeddings.ENCODER_KEYS) that embedded them

    def for_categories(self, categories: Sequence[str], source: Path) -> np.ndarray:
        """Rows in the order of `categories` (the split's); every one must have a prompt."""
        missing = [c for c in categories if c not in self.categories]
        if missing:
            raise PipelineError(
                f"{source}: no prompt embedding for category {missing[0]!r} (embedded: "
                f"{', '.join(self.categories)}); add it to dataset.categories and rerun embed_text"
            )
        return self.vectors[[self.categories.index(c) for c in categories]]


def category_prompts(template: str, categories: Sequence[str]) -> list[str]:
    """`a video about {category}` -> `a video about art music` (underscores read as spaces)."""
    return [template.format(category=c.replace("_", " ")) for c in categories]


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def embed_prompts(
    encoder: ClipEncoder, templates: Sequence[str], categories: Sequence[str], settings: dict[str, Any]
) -> TextEmbeddings:
    """One unit vector per category: the normalised mean of its normalised prompt embeddings."""
    prompts = [prompt for template in templates for prompt in category_prompts(template, categories)]
    embedded = unit(encode_texts(encoder, prompts).astype(np.float32)).reshape(len(templates), len(categories), -1)
    return TextEmbeddings(list(categories), list(templates), unit(embedded.mean(0)), settings)


def save_text_embeddings(directory: Path, text: TextEmbeddings) -> None:
    """`directory` (text.npz and meta.json) is replaced whole, or not at all."""
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        with (tmp / TEXT_FILE).open("wb") as handle:
            np.savez(
                handle, categories=np.array(text.categories), templates=np.array(text.templates), vectors=text.vectors
            )
        (tmp / META_FILE).write_text(json.dumps({"encoder": text.encoder}, indent=2) + "\n", encoding="utf-8")
        if directory.exists():
            shutil.rmtree(directory)


def load_text_embeddings(directory: Path) -> TextEmbeddings:
    path = directory / TEXT_FILE
    if not path.is_file() or not (directory / META_FILE).is_file():
        raise PipelineError(f"{path}: no prompt embeddings; run the embed_text stage first (dvc repro embed_text)")
    meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
    with np.load(path) as stored:
        return TextEmbeddings(
            [str(c) for c in stored["categories"]],
            [str(t) for t in stored["templates"]],
            stored["vectors"],
            meta["encoder"],
        )
