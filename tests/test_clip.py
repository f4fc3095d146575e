"""open_clip for real: a tiny registered config, seeded init, a checkpoint loaded by path."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipvideo.clip import encode_batch, load_encoder, preprocess_jpegs
from clipvideo.errors import ParamsError


def jpeg(colour: tuple[int, int, int], size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def embed(encoder, images: list[bytes]) -> np.ndarray:
    return encode_batch(encoder, preprocess_jpegs(images, encoder))


IMAGES = [jpeg((200, 30, 30), size=96), jpeg((30, 200, 30), size=96)]  # resized to the model's 64 px


def test_seeded_random_init_is_reproducible_and_seed_dependent(tiny_model_config: Path):
    first = embed(load_encoder(str(tiny_model_config), "none", seed=1), IMAGES)
    again = embed(load_encoder(str(tiny_model_config), "none", seed=1), IMAGES)
    other = embed(load_encoder(str(tiny_model_config), "none", seed=2), IMAGES)
    assert first.shape == (2, 32)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_checkpoint_loaded_by_path_gives_the_saved_model(tiny_model_config: Path, tmp_path: Path):
    source = load_encoder(str(tiny_model_config), "none", seed=7)
    checkpoint = tmp_path / "tiny-seed7.pt"
    torch.save({"state_dict": source.model.state_dict()}, checkpoint)
    loaded = load_encoder(str(tiny_model_config), str(checkpoint), seed=999)
    assert loaded.is_pretrained and "tiny-seed7.pt" in loaded.describe()
    np.testing.assert_allclose(embed(loaded, IMAGES), embed(source, IMAGES), rtol=1e-5, atol=1e-6)


def test_untrained_encoder_says_so(tiny_model_config: Path):
    assert "untrained" in load_encoder(str(tiny_model_config), "none", seed=0).describe()


@pytest.mark.parametrize(
    ("model", "pretrained", "key"),
    [
        ("ViT-Nonexistent-99", "none", "embed.model"),
        ("missing-config.json", "none", "embed.model"),
        ("ViT-B-32", "not-a-tag", "embed.pretrained"),
    ],
)
def test_bad_model_or_weights_name_the_key(model: str, pretrained: str, key: str):
    with pytest.raises(ParamsError, match=key):
        load_encoder(model, pretrained, seed=0)
