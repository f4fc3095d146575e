"""CLIP text embeddings of the category prompts: the zeroshot variant's classifier (the embed_text step).

The zeroshot variant assigns a video to the category whose prompt embedding is nearest. With several
templates, each category's vector is their average as open_clip's zero-shot classifier builder makes it:
every prompt embedding normalised, the mean over the templates, normalised again. The vectors live in
their own stage's output (data/text/), so a prompt change re-embeds a few sentences, not every frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from clipvideo.config.schema import EmbedParams, EmbedSettings, EmbedTextParams
from clipvideo.core.paths import ProjectPaths
from clipvideo.embed.encoder import ClipEncoder, encode_texts, encoder_identity, open_encoder
from clipvideo.embed.store import TextEmbeddings, encoder_record, save_text_embeddings


def category_prompts(template: str, categories: Sequence[str]) -> list[str]:
    """`a video about {category}` -> `a video about art music` (underscores read as spaces)."""
    return [template.format(category=c.replace("_", " ")) for c in categories]


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def embed_prompts(
    encoder: ClipEncoder, templates: Sequence[str], categories: Sequence[str], record: dict[str, Any]
) -> TextEmbeddings:
    """One unit vector per category: the normalised mean of its normalised prompt embeddings."""
    prompts = [prompt for template in templates for prompt in category_prompts(template, categories)]
    embedded = unit(encode_texts(encoder, prompts).astype(np.float32)).reshape(len(templates), len(categories), -1)
    return TextEmbeddings(list(categories), list(templates), unit(embedded.mean(0)), record)


def embed_category_prompts(
    paths: ProjectPaths, categories: list[str], text: EmbedTextParams, embed: EmbedParams, settings: EmbedSettings
) -> str:
    """data/text/: every category's prompt vector, by the encoder the frames use; returns the summary line."""
    encoder = open_encoder(embed, settings.device, paths.root)
    record = encoder_record(embed, encoder_identity(embed, paths.root))
    vectors = embed_prompts(encoder, text.prompts, categories, record)
    save_text_embeddings(paths.text_dir, vectors)
    return (
        f"{len(categories)} categories x {len(text.prompts)} prompt templates -> {paths.text_dir} "
        f"({encoder.describe()})"
    )
