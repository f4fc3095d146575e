"""The encoder's runtime fingerprint: what besides the encoder's params decides an embedding's bytes, measured in
the process that runs the model. The torch and open_clip versions; the device type; the precision path actually
taken (autocast on CUDA, bf16 weights on a CPU); on CUDA whether TF32 is allowed (matmuls and cuDNN convolutions:
the patch embedding), on a CPU the instruction set ATen dispatches its kernels to (AVX2, AVX512, ...: vectorised
reductions and oneDNN's bf16 path give other floats on another one).

The embeddings cache keys its entries by this, data/embeddings/meta.json records it, and a Ray model replica whose
fingerprint differs from the stage's refuses to work. The CUDA card itself is not part of it: the stage of a Ray
run, on a head node without a GPU, could not know the workers' cards.
"""

from __future__ import annotations

from typing import Any

import open_clip
import torch

from clipvideo.embed.encoder import AUTOCAST_DTYPES


def precision_path(device_type: str, precision: str) -> str:
    """How embed.precision runs on this device type (encoder.precision_context and input_dtype)."""
    if device_type == "cuda" and precision in AUTOCAST_DTYPES:
        return f"autocast {AUTOCAST_DTYPES[precision]}".replace("torch.", "")
    if device_type == "cpu" and precision == "bf16":
        return "bfloat16 weights"
    return "float32"


def encoder_runtime(device: torch.device | str, precision: str) -> dict[str, Any]:
    """The runtime fingerprint of a model on `device` at embed.precision, in this process: JSON values."""
    kind = torch.device(device).type
    runtime: dict[str, Any] = {
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "device": kind,
        "precision_path": precision_path(kind, precision),
    }
    if kind == "cuda":
        runtime["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        runtime["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
    else:
        runtime["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return runtime
