"""The CLIP encoder with open_clip: loading it (once, here), preprocessing frames, image and text embeddings.

Models are named as open_clip names them, or given as a path to a model config `.json`, which is
registered the way open_clip registers its own configs (that is also how the tests get a tiny
model). Weights: `none` (seeded random init: a pipeline check, not a classifier), a pretrained tag
such as `openai`, or a local checkpoint path.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from torchvision.io import decode_jpeg

from clipvideo.config.schema import EmbedParams
from clipvideo.core.cache import sha256_file
from clipvideo.core.errors import ParamsError
from clipvideo.core.system import MAX_DECODE_THREADS_PER_GPU, available_cores, torch_device
from clipvideo.embed.store import encoder_seed

# What open_clip logs when it builds a model without weights; describe() says so in the stage's own words.
RANDOM_INIT_MESSAGE = "initialized randomly"
QUICK_GELU_SUFFIX = "-quickgelu"  # open_clip's name of a config's QuickGELU twin (ViT-B-32 -> ViT-B-32-quickgelu)

# On CUDA, fp16 and bf16 run the fp32 weights under autocast (matmuls in half precision, norms in fp32).
AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class ClipEncoder:
    model: torch.nn.Module
    name: str
    source: str  # embed.model as given: an open_clip name or a config .json path
    weights: str
    image_size: int
    mean: torch.Tensor  # (3, 1, 1)
    std: torch.Tensor
    device: torch.device
    precision: str

    @property
    def is_pretrained(self) -> bool:
        return self.weights != "none"

    def describe(self) -> str:
        return describe_encoder(self.name, self.weights)


def describe_encoder(name: str, weights: str) -> str:
    """How outputs name the encoder: an untrained one says it is a pipeline check."""
    if weights == "none":
        return f"{name}, untrained (seeded random init: a pipeline check, not a real classifier)"
    return f"{name}, weights {weights}"


def resolve_model_name(model: str) -> str:
    """An open_clip model name; a `.json` path is registered first and named by its stem."""
    if model.endswith(".json"):
        path = Path(model)
        if not path.is_file():
            raise ParamsError(f"params.yaml: embed.model={model!r}: model config file not found")
        open_clip.add_model_config(path)
        return path.stem
    if model not in open_clip.list_models():
        raise ParamsError(
            f"params.yaml: embed.model={model!r}: expected an open_clip model name (e.g. ViT-B-32) "
            "or a path to a model config .json"
        )
    return model


def under_root(model: str, pretrained: str, root: Path) -> tuple[str, str]:
    """embed.model and embed.pretrained with a relative config or checkpoint path taken against the project root
    (--root), not the working directory; names and tags are returned as given."""
    if model.endswith(".json") and not Path(model).is_absolute():
        model = str((root / model).absolute())
    if not Path(pretrained).is_absolute() and (root / pretrained).is_file():
        pretrained = str((root / pretrained).absolute())
    return model, pretrained


def resolve_device(device: str) -> torch.device:
    return torch_device(device, "embed.device")


def checked_weights(name: str, pretrained: str) -> str | None:
    """What open_clip loads for embed.pretrained: None (random init), a checkpoint file or a published tag."""
    if pretrained == "none":
        return None
    if Path(pretrained).is_file() or pretrained in open_clip.list_pretrained_tags_by_model(name):
        return pretrained
    tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none published"
    raise ParamsError(
        f"params.yaml: embed.pretrained={pretrained!r}: expected none, a checkpoint file path, or a "
        f"tag for {name} ({tags})"
    )


@dataclass(frozen=True)
class Architecture:
    """What the network is built as beyond its open_clip config: what its weights were trained with."""

    quick_gelu: bool  # QuickGELU activations (OpenAI's CLIP), not GELU

    @property
    def activation(self) -> str:
        return "QuickGELU" if self.quick_gelu else "GELU"


def architecture_for(name: str, pretrained: str) -> Architecture:
    """The network `pretrained` is loaded into: the one decision building, checking and the cache key share.

    `name` is an open_clip model name (registered configs included). A published tag (open_clip's pretrained cfg)
    that says `quick_gelu` gets QuickGELU, as it was trained, whatever the config says (ViT-B-32 + openai is
    built as ViT-B-32-quickgelu); any other tag, `none` or a checkpoint file gets the config's own activation
    (a tag's cfg that says nothing is taken as trained on the config it is published for). Raises ParamsError
    for a tag published only for the config's GELU/QuickGELU twin, trained on the other activation
    (ViT-B-32-quickgelu + laion2b_s34b_b79k): open_clip would load it into the wrong network.
    """
    config = open_clip.get_model_config(name) or {}
    own = bool(config.get("quick_gelu", False))
    if pretrained == "none":
        return Architecture(own)
    tag = open_clip.get_pretrained_cfg(name, pretrained)
    if tag:
        return Architecture(own or bool(tag.get("quick_gelu", False)))
    twin = name.removesuffix(QUICK_GELU_SUFFIX) if name.endswith(QUICK_GELU_SUFFIX) else name + QUICK_GELU_SUFFIX
    twin_tag = open_clip.get_pretrained_cfg(twin, pretrained)  # {} for a checkpoint path or an unknown tag
    if twin_tag:
        trained = Architecture(
            bool((open_clip.get_model_config(twin) or {}).get("quick_gelu", False))
            or bool(twin_tag.get("quick_gelu", False))
        )
        if trained.quick_gelu != own:
            raise ParamsError(
                f"params.yaml: embed.model={name!r} is the {Architecture(own).activation} network, and "
                f"embed.pretrained={pretrained!r} was trained on the {trained.activation} one; "
                f"use embed.model={twin}"
            )
    return Architecture(own)


def resolved_encoder(model: str, pretrained: str) -> tuple[str, str | None, Architecture]:
    """embed.model's open_clip name, what open_clip loads for embed.pretrained and the network it goes into;
    checked (ParamsError naming the key), without building anything."""
    name = resolve_model_name(model)
    architecture = architecture_for(name, pretrained)  # first: a twin's tag is refused naming the twin
    return name, checked_weights(name, pretrained), architecture


def checked_device(device: str, precision: str) -> torch.device:
    """The device embed.device names here, checked against embed.precision."""
    torch_device = resolve_device(device)
    if precision == "fp16" and torch_device.type != "cuda":
        raise ParamsError(
            f"params.yaml: embed.precision='fp16': needs a CUDA device, and this run uses {torch_device}; "
            "use bf16 on a CPU"
        )
    return torch_device


class WithoutRandomInitWarning(logging.Filter):
    """Drops open_clip's "Model initialized randomly" warning, nothing else (open_clip logs on the root logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from_open_clip = record.pathname.startswith(str(Path(open_clip.__file__).parent))
        return not (from_open_clip and RANDOM_INIT_MESSAGE in record.getMessage())


@contextlib.contextmanager
def without_random_init_warning() -> Iterator[None]:
    """Only that one message is hidden, only while open_clip builds the model: the host process's logging
    (its `logging.disable` level, its handlers) is left as it was."""
    quiet = WithoutRandomInitWarning()
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def load_encoder(
    model: str, pretrained: str, seed: int | None, device: str = "cpu", precision: str = "fp32"
) -> ClipEncoder:
    """The encoder, built as architecture_for says; `seed` decides a random init (pretrained `none`) and only
    that: pretrained weights replace every parameter, so it may be None for them."""
    name, weights, architecture = resolved_encoder(model, pretrained)
    torch_device = checked_device(device, precision)
    if weights is None and seed is None:
        raise ValueError(f"{name}: a random init (pretrained none) needs a seed")
    # the init draws from the CPU's random stream (open_clip builds on the CPU, then moves the model), seeded inside
    # the block only: the caller's stream, and every CUDA device's, are left as they were
    with torch.random.fork_rng(devices=[]), without_random_init_warning():  # describe() says "untrained"
        torch.random.default_generator.manual_seed(0 if seed is None else seed)
        clip_model = open_clip.create_model(
            name, pretrained=weights, device=torch_device, force_quick_gelu=architecture.quick_gelu
        )
    clip_model.eval()
    if precision == "bf16" and torch_device.type == "cpu":
        # Weights in bf16, not autocast: autocast re-casts fp32 weights on every call and ran slower than fp32
        # on this CPU; bf16 weights run on the AMX/avx512_bf16 units (about 2-4x fp32, cosine > 0.9999).
        clip_model.to(torch.bfloat16)
    cfg = open_clip.get_model_preprocess_cfg(clip_model)
    size = cfg["size"]
    return ClipEncoder(
        model=clip_model,
        name=name,
        source=model,
        weights=pretrained,
        image_size=size if isinstance(size, int) else size[0],
        mean=torch.tensor(cfg["mean"]).view(3, 1, 1),
        std=torch.tensor(cfg["std"]).view(3, 1, 1),
        device=torch_device,
        precision=precision,
    )


def open_encoder(embed: EmbedParams, device: str, root: Path) -> ClipEncoder:
    """The encoder params.yaml's `embed` section names, with paths taken against the project root: the one way
    embed, embed_text and predict load it."""
    model, pretrained = under_root(embed.model, embed.pretrained, root)
    return load_encoder(model, pretrained, encoder_seed(embed), device, embed.precision)


def check_embed_params(embed: EmbedParams, root: Path) -> Architecture:
    """What open_encoder refuses of params.yaml's `embed` (the model, the weights, the pair's architecture),
    without building the model or looking at a device: the check_params stage's check. Returns the architecture."""
    model, pretrained = under_root(embed.model, embed.pretrained, root)
    return resolved_encoder(model, pretrained)[2]


def check_encoder(embed: EmbedParams, device: str, root: Path) -> torch.device:
    """What open_encoder refuses, without building the model (for a stage whose model is built elsewhere);
    returns the device embed.device names here."""
    check_embed_params(embed, root)
    return checked_device(device, embed.precision)


def encoder_identity(embed: EmbedParams, root: Path) -> dict[str, Any]:
    """Everything that decides the encoder's outputs, without building it: the model (a config file by its
    content), the network the weights go into (architecture_for: `quick_gelu`), the weights (a checkpoint file
    by its content, a tag by name), precision, and `seed`: embed.seed for a random init, None for pretrained
    weights (no seed changes them, so none splits their cache); and `note`, how outputs describe it. What the
    per-video cache keys embeddings by. Checked as open_encoder checks (ParamsError)."""
    model, pretrained = under_root(embed.model, embed.pretrained, root)
    name, _, architecture = resolved_encoder(model, pretrained)
    config = sha256_file(Path(model)) if model.endswith(".json") else ""
    weights = f"sha256:{sha256_file(Path(pretrained))}" if Path(pretrained).is_file() else pretrained
    return {
        "model": name,
        "config": config,
        "quick_gelu": architecture.quick_gelu,
        "weights": weights,
        "precision": embed.precision,
        "seed": encoder_seed(embed),
        "note": describe_encoder(name, pretrained),
    }


def preprocess_jpegs(jpegs: Sequence[bytes], encoder: ClipEncoder) -> torch.Tensor:
    """JPEG bytes -> normalised batch at the model's input size, in the model's dtype (same path for predict).

    In place where possible, and cast here: the embed loop runs this in its prefetch thread, off the model's path.
    """
    images = decode_jpeg([torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in jpegs])
    batch = torch.stack(images).float().div_(255)
    if batch.shape[-1] != encoder.image_size or batch.shape[-2] != encoder.image_size:
        batch = F.interpolate(batch, size=(encoder.image_size,) * 2, mode="bicubic", antialias=True).clamp_(0, 1)
    return batch.sub_(encoder.mean).div_(encoder.std).to(input_dtype(encoder))


def input_dtype(encoder: ClipEncoder) -> torch.dtype:
    """bf16 for a CPU model cast to bf16; float32 otherwise (on CUDA, autocast casts inside the model)."""
    return torch.bfloat16 if encoder.precision == "bf16" and encoder.device.type == "cpu" else torch.float32


def precision_context(encoder: ClipEncoder) -> contextlib.AbstractContextManager:
    """Autocast to fp16/bf16 on CUDA; nothing on a CPU, where bf16 means bf16 weights (see load_encoder)."""
    if encoder.device.type == "cuda" and encoder.precision in AUTOCAST_DTYPES:
        return torch.autocast("cuda", dtype=AUTOCAST_DTYPES[encoder.precision])
    return contextlib.nullcontext()


def loader_threads(device: torch.device) -> int:
    """Threads that read and decode the next batches while the model runs on this one.

    One on a CPU: the forward already uses every core, and more decoding only slows it. On a GPU the CPU side
    must keep up with thousands of images a second: every core but one, at most MAX_DECODE_THREADS_PER_GPU.
    """
    if device.type != "cuda":
        return 1
    return max(1, min(MAX_DECODE_THREADS_PER_GPU, available_cores() - 1))


@torch.inference_mode()
def encode_batch(encoder: ClipEncoder, batch: torch.Tensor) -> np.ndarray:
    """Image embeddings as float32, computed in the encoder's precision."""
    with precision_context(encoder):
        features = encoder.model.encode_image(batch.to(encoder.device, dtype=input_dtype(encoder), non_blocking=True))
    return features.float().cpu().numpy()


@torch.inference_mode()
def encode_texts(encoder: ClipEncoder, texts: Sequence[str]) -> np.ndarray:
    tokenizer = open_clip.get_tokenizer(encoder.name)
    tokens = tokenizer(list(texts)).to(encoder.device)
    with precision_context(encoder):
        return encoder.model.encode_text(tokens).float().cpu().numpy()
