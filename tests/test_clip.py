"""open_clip for real: a tiny registered config, seeded init, a checkpoint loaded by path."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipvideo.clip import encode_batch, encode_texts, load_encoder, prefetched, preprocess_jpegs, under_root
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


def test_bf16_text_embeddings_follow_the_model_dtype(tiny_model_config: Path):
    """bf16 is done by casting the model (no autocast): text goes through the bf16 weights and comes back float32."""
    fp32 = load_encoder(str(tiny_model_config), "none", seed=3)
    bf16 = load_encoder(str(tiny_model_config), "none", seed=3, precision="bf16")
    texts = ["a video about food", "a video about travel"]
    full, half = encode_texts(fp32, texts), encode_texts(bf16, texts)
    assert half.dtype == np.float32 and half.shape == full.shape == (2, 32)
    assert not np.array_equal(full, half)  # computed in bf16, not silently in fp32
    cosine = (full * half).sum(1) / np.linalg.norm(full, axis=1) / np.linalg.norm(half, axis=1)
    assert np.all(cosine > 0.99)


def test_prefetch_thread_ends_when_the_consumer_stops_early():
    """A consumer that stops (an error, Ctrl-C) must not leave the producer blocked on a full queue forever."""
    produced: list[int] = []

    def endless() -> Iterator[int]:
        while True:
            produced.append(len(produced))
            yield produced[-1]

    before = set(threading.enumerate())
    items = prefetched(endless(), depth=2, poll_s=0.01)
    assert next(items) == 0
    items.close()  # what contextlib.closing does when the embed loop raises
    (producer,) = set(threading.enumerate()) - before
    producer.join(timeout=30)
    assert not producer.is_alive()
    assert len(produced) <= 4  # it stopped producing, at most a queue's worth ahead


def test_prefetch_passes_items_in_order_and_reraises_a_producer_error():
    assert list(prefetched(iter(range(10)), depth=2)) == list(range(10))

    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("bad frames file")

    items = prefetched(failing())
    assert next(items) == 1
    with pytest.raises(ValueError, match="bad frames file"):
        next(items)


def test_relative_config_and_checkpoint_paths_are_taken_against_the_root(tmp_path: Path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tiny.json").write_text("{}")
    (tmp_path / "ckpt.pt").write_bytes(b"")
    root = tmp_path.absolute()
    expected = (str(root / "configs/tiny.json"), str(root / "ckpt.pt"))
    assert under_root("configs/tiny.json", "ckpt.pt", tmp_path) == expected
    assert under_root("ViT-B-32", "openai", tmp_path) == ("ViT-B-32", "openai")  # names and tags stay as given
    assert under_root("/abs/model.json", "none", tmp_path) == ("/abs/model.json", "none")
