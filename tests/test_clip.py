"""open_clip for real: a tiny registered config, seeded init, a checkpoint loaded by path."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipvideo.core.errors import ParamsError
from clipvideo.embed.embedder import prefetched
from clipvideo.embed.encoder import encode_batch, encode_texts, load_encoder, preprocess_jpegs, under_root


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


def test_prefetch_threads_end_when_the_consumer_stops_early():
    """A consumer that stops (an error, Ctrl-C) must not leave threads preparing batches nobody will use."""
    prepared: list[int] = []

    def endless() -> Iterator[int]:
        count = 0
        while True:
            yield count
            count += 1

    before = set(threading.enumerate())
    items = prefetched(lambda item: prepared.append(item) or item, endless(), workers=2, depth=2)
    assert next(items) == 0
    items.close()  # what contextlib.closing does when the embed loop raises
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=30)
        assert not thread.is_alive()
    assert len(prepared) <= 4  # it stopped preparing: at most workers + depth ahead


def test_prefetch_passes_items_in_order_and_reraises_an_error():
    slow_first = [0.05, 0, 0, 0, 0, 0, 0, 0, 0, 0]  # with 3 threads, later items finish first
    assert list(prefetched(lambda i: time.sleep(slow_first[i]) or i * i, range(10), workers=3)) == [
        i * i for i in range(10)
    ]

    def fails_on_two(item: int) -> int:
        if item == 2:
            raise ValueError("bad frames file")
        return item

    items = prefetched(fails_on_two, range(5))
    assert [next(items), next(items)] == [0, 1]
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


def test_fp16_needs_a_cuda_device(tiny_model_config: Path):
    """fp16 is CUDA autocast; a CPU has no fast fp16 path, so it is refused with the key named, not run slowly."""
    with pytest.raises(ParamsError, match=r"embed\.precision='fp16': needs a CUDA device, and this run uses cpu"):
        load_encoder(str(tiny_model_config), "none", seed=0, device="cpu", precision="fp16")
