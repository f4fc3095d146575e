"""open_clip for real: a tiny registered config, seeded init, a checkpoint loaded by path, a tag's own network."""

from __future__ import annotations

import io
import logging
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from clipvideo.config.schema import EmbedParams
from clipvideo.core.errors import ParamsError
from clipvideo.embed.embedder import prefetched
from clipvideo.embed.encoder import (
    Architecture,
    architecture_for,
    check_embed_params,
    encode_batch,
    encode_texts,
    encoder_identity,
    load_encoder,
    preprocess_jpegs,
    under_root,
)
from clipvideo.embed.store import encoder_record
from tests.conftest import write_params


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


# GELU-trained weights (open_clip's tag for ViT-B-32 says nothing of quick_gelu) asked into the QuickGELU config.
REFUSED_PAIR = (
    "params.yaml: embed.model='ViT-B-32-quickgelu' is the QuickGELU network, and "
    "embed.pretrained='laion2b_s34b_b79k' was trained on the GELU one; use embed.model=ViT-B-32"
)


def activations(model: torch.nn.Module) -> set[type]:
    """The activation modules of the image tower's MLPs."""
    return {type(block.mlp.gelu) for block in model.visual.transformer.resblocks}


def test_openai_weights_go_into_the_quickgelu_network_they_were_trained_on(tmp_path: Path, monkeypatch):
    """ViT-B-32 + openai as open_clip 3.3 defines them: a GELU config, a tag whose cfg says quick_gelu. The
    weights download is stubbed with a seeded QuickGELU ViT-B-32's state dict (float16: half the file); the rest
    is open_clip's own code."""
    assert open_clip.get_pretrained_cfg("ViT-B-32", "openai")["quick_gelu"] is True
    assert not open_clip.get_model_config("ViT-B-32").get("quick_gelu")
    torch.manual_seed(0)
    source = open_clip.create_model("ViT-B-32-quickgelu").eval()
    checkpoint = tmp_path / "openai-ViT-B-32.pt"
    torch.save({key: value.half() for key, value in source.state_dict().items()}, checkpoint)
    source.load_state_dict(torch.load(checkpoint))  # the source rounded as the file is
    asked = []
    monkeypatch.setattr(open_clip.factory, "download_pretrained", lambda cfg, **_: asked.append(cfg) or str(checkpoint))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder = load_encoder("ViT-B-32", "openai", seed=None)
    assert [cfg["url"] for cfg in asked] == [open_clip.get_pretrained_cfg("ViT-B-32", "openai")["url"]]
    assert not [w for w in caught if "QuickGELU mismatch" in str(w.message)]
    assert activations(encoder.model) == {open_clip.transformer.QuickGELU}
    images = torch.rand(2, 3, 224, 224)
    with torch.inference_mode():
        np.testing.assert_allclose(encode_batch(encoder, images), source.encode_image(images).numpy(), atol=1e-5)
    assert encoder.is_pretrained and encoder.mean.flatten().tolist() == pytest.approx(
        [0.48145466, 0.4578275, 0.40821073]
    )


@pytest.mark.parametrize(
    ("model", "pretrained", "quick_gelu"),
    [
        ("ViT-B-32", "openai", True),  # a GELU config, QuickGELU-trained weights
        ("ViT-B-32", "laion400m_e32", True),
        ("ViT-B-32-quickgelu", "openai", True),
        ("ViT-B-32", "laion2b_s34b_b79k", False),
        ("ViT-B-32", "none", False),  # no tag: the config's own network
        ("ViT-B-32-quickgelu", "none", True),
        ("ViT-B-32", "/weights/a-checkpoint.pt", False),
    ],
)
def test_the_network_is_the_one_the_weights_were_trained_on(model: str, pretrained: str, quick_gelu: bool):
    assert architecture_for(model, pretrained) == Architecture(quick_gelu)


def test_weights_trained_on_another_network_are_refused_in_one_line(tmp_path: Path):
    """The same line from the check, the cache key and the build (before any download)."""
    embed = EmbedParams(model="ViT-B-32-quickgelu", pretrained="laion2b_s34b_b79k", precision="fp32", seed=0)
    for refused in (
        lambda: architecture_for(embed.model, embed.pretrained),
        lambda: check_embed_params(embed, tmp_path),
        lambda: encoder_identity(embed, tmp_path),
        lambda: load_encoder(embed.model, embed.pretrained, seed=None),
    ):
        with pytest.raises(ParamsError) as error:
            refused()
        assert str(error.value) == REFUSED_PAIR
    assert check_embed_params(embed.model_copy(update={"model": "ViT-B-32"}), tmp_path) == Architecture(False)


def test_check_params_refuses_weights_for_another_network(tmp_path: Path, monkeypatch, capsys):
    from stages import check_params

    monkeypatch.setattr("clipvideo.cli.doctor.check_environment", lambda: "the environment works")
    write_params(tmp_path, {"embed.model": "ViT-B-32-quickgelu", "embed.pretrained": "laion2b_s34b_b79k"})
    assert check_params.main(["--root", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"check_params: error: {REFUSED_PAIR}\n"
    write_params(tmp_path, {"embed.model": "ViT-B-32", "embed.pretrained": "openai"})
    assert check_params.main(["--root", str(tmp_path)]) == 0


def test_the_cache_key_names_the_network_and_a_seed_only_for_a_random_init(tmp_path: Path):
    """Old GELU embeddings are never served for the QuickGELU network; embed.seed splits only random inits."""
    openai = EmbedParams(model="ViT-B-32", pretrained="openai", precision="fp32", seed=1)
    other_seed = openai.model_copy(update={"seed": 2})
    identity = encoder_identity(openai, tmp_path)
    assert (identity["quick_gelu"], identity["seed"]) == (True, None)
    assert identity == encoder_identity(other_seed, tmp_path)
    assert encoder_record(openai, identity) == encoder_record(other_seed, identity)  # meta.json
    assert encoder_record(openai, identity)["seed"] is None
    untrained = openai.model_copy(update={"pretrained": "none"})
    assert (encoder_identity(untrained, tmp_path)["quick_gelu"], encoder_identity(untrained, tmp_path)["seed"]) == (
        False,
        1,
    )
    assert encoder_identity(untrained, tmp_path) != encoder_identity(untrained.model_copy(update={"seed": 2}), tmp_path)


def test_loading_leaves_the_host_process_logging_as_it_was(tiny_model_config: Path, caplog):
    """open_clip's "initialized randomly" warning is hidden (describe() says it), and nothing else is touched."""
    filters = list(logging.getLogger().filters)
    logging.disable(logging.INFO)
    try:
        with caplog.at_level(logging.WARNING):
            load_encoder(str(tiny_model_config), "none", seed=0)
        assert logging.root.manager.disable == logging.INFO
    finally:
        logging.disable(logging.NOTSET)
    assert not [record for record in caplog.records if "initialized randomly" in record.getMessage()]
    assert logging.getLogger().filters == filters
