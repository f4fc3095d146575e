"""CLIP text embeddings of one prompt per category, stored next to the frame embeddings.

The zeroshot variant assigns a video to the category whose prompt embedding is nearest; it needs
no training, only these vectors, written by the embed stage with the same encoder as the frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipvideo.clip import ClipEncoder, encode_texts
from clipvideo.errors import PipelineError
from clipvideo.files import atomic_path

TEXT_FILE = "text.npz"


@dataclass
class TextEmbeddings:
    categories: list[str]
    prompts: list[str]
    vectors: np.ndarray  # (categories, dim) float32

    def for_categories(self, categories: Sequence[str], source: Path) -> np.ndarray:
        """Rows in the order of `categories` (the split's); every one must have a prompt."""
        missing = [c for c in categories if c not in self.categories]
        if missing:
            raise PipelineError(
                f"{source}: no prompt embedding for category {missing[0]!r} (embedded: "
                f"{', '.join(self.categories)}); add it to dataset.categories and rerun embed"
            )
        return self.vectors[[self.categories.index(c) for c in categories]]


def category_prompts(template: str, categories: Sequence[str]) -> list[str]:
    """`a video about {category}` -> `a video about art music` (underscores read as spaces)."""
    return [template.format(category=c.replace("_", " ")) for c in categories]


def embed_prompts(encoder: ClipEncoder, template: str, categories: Sequence[str]) -> TextEmbeddings:
    prompts = category_prompts(template, categories)
    return TextEmbeddings(list(categories), prompts, encode_texts(encoder, prompts).astype(np.float32))


def save_text_embeddings(directory: Path, text: TextEmbeddings) -> Path:
    path = directory / TEXT_FILE
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.savez(handle, categories=np.array(text.categories), prompts=np.array(text.prompts), vectors=text.vectors)
    return path


def load_text_embeddings(directory: Path) -> TextEmbeddings:
    path = directory / TEXT_FILE
    if not path.is_file():
        raise PipelineError(f"{path}: no prompt embeddings; rerun the embed stage (dvc repro embed)")
    with np.load(path) as stored:
        return TextEmbeddings(
            [str(c) for c in stored["categories"]], [str(p) for p in stored["prompts"]], stored["vectors"]
        )
