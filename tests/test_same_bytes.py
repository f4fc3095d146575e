"""Same bytes on any x86 machine: the logistic regression's exact solver, its agreement with scikit-learn, and the
scoped deterministic settings of training (docs/models.md, "Same bytes on any x86 machine")."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from clipvideo.modeling import exact
from clipvideo.modeling.classifiers import LinearProbe, predict_proba
from clipvideo.modeling.training import TrainConfig, deterministic, fit_logreg, train_classifier
from tests.conftest import REPO

# One process per environment, set up as the train stage's, fits logreg and two small torch variants with 1, then 2
# threads and prints the sha256 of each model file as save_model writes it (what DVC hashes).
FIT_SCRIPT = """
from clipvideo.core.system import reproducible_cpu
reproducible_cpu()  # as python -m stages.train does, before torch is imported
import hashlib, json, sys, tempfile
from dataclasses import replace
from pathlib import Path
import numpy as np, torch
from threadpoolctl import threadpool_limits
from clipvideo.modeling.classifiers import LinearProbe, TransformerProbe
from clipvideo.modeling.saved import save_model
from clipvideo.modeling.training import TrainConfig, deterministic, fit_logreg, train_classifier

rng = np.random.default_rng(0)
labels = np.arange(48) % 4
frames = (rng.normal(size=(4, 512))[labels][:, None, :] + 2 * rng.normal(size=(48, 8, 512))).astype(np.float16)
mask = np.arange(8)[None, :] < rng.integers(3, 9, size=48)[:, None]
config = TrainConfig(epochs=3, lr=0.01, weight_decay=1e-4, batch_size=16, seed=7, mixup_alpha=0.4)
hashes = {}
with tempfile.TemporaryDirectory() as tmp:
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with threadpool_limits(threads):
            logreg = fit_logreg(frames, mask, labels, 4, c=1.0, max_iter=100)
            with deterministic(3):
                linear = LinearProbe(512, 4)
                transformer = TransformerProbe(512, 4, layers=1, heads=8, dropout=0.1, ff_dim=64)
            train_classifier(linear, frames, mask, labels, config)
            train_classifier(transformer, frames, mask, labels, replace(config, epochs=2, mixup_alpha=None))
        for name, model in (("logreg", logreg), ("linear-mixup", linear), ("transformer", transformer)):
            path = Path(tmp) / name
            save_model(path, name, "linear", model, list("abcd"), {}, {}, {})
            hashes[f"{name}, {threads} threads"] = hashlib.sha256(path.read_bytes()).hexdigest()
print(json.dumps(hashes))
"""
# Kernels numpy's OpenBLAS picks on machines with AVX2, AVX-512 and only SSE3; torch's AVX2 kernels (this
# machine's may be AVX-512); MKL's AVX2 code path and numpy without its AVX-512 loops, as on a machine without it.
ENVIRONMENTS = [
    {"OPENBLAS_CORETYPE": "Haswell"},
    {"OPENBLAS_CORETYPE": "SkylakeX"},
    {"OPENBLAS_CORETYPE": "Prescott", "ATEN_CPU_CAPABILITY": "avx2"},
    {
        "OPENBLAS_CORETYPE": "Haswell",
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR",
    },
]
VARIABLES = (
    "OPENBLAS_CORETYPE",
    "ATEN_CPU_CAPABILITY",
    "MKL_ENABLE_INSTRUCTIONS",
    "NPY_DISABLE_CPU_FEATURES",
    "MKL_CBWR",
)


@pytest.mark.slow  # 4 processes that import torch and scikit-learn: 62 s on 2 shared cores
def test_fits_are_the_same_bytes_under_other_kernels_simd_levels_and_threads():
    base = {k: v for k, v in os.environ.items() if k not in VARIABLES and not k.endswith("_NUM_THREADS")}
    command = [sys.executable, "-c", FIT_SCRIPT]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    runs = [subprocess.Popen(command, cwd=REPO, env={**base, **extra}, **pipes) for extra in ENVIRONMENTS]
    outputs = [run.communicate() for run in runs]
    assert [run.returncode for run in runs] == [0] * len(runs), [err[-2000:] for _, err in outputs]
    found = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    for name in ("logreg", "linear-mixup", "transformer"):
        digests = {
            f"{env} {key}": h[:12]
            for env, hashes in zip(ENVIRONMENTS, found, strict=True)
            for key, h in hashes.items()
            if key.startswith(name)
        }
        assert len(set(digests.values())) == 1, "\n".join(f"{k}: {v}" for k, v in digests.items())


def standardised_toy(n: int, dim: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (n, 6, dim) float16 with a class signal, ragged masks, labels; and the mean-embedding features."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    frames = (rng.normal(size=(classes, dim))[labels][:, None, :] + 3 * rng.normal(size=(n, 6, dim))).astype(np.float16)
    mask = np.arange(6)[None, :] < rng.integers(2, 7, size=n)[:, None]
    return frames, mask, labels


@pytest.mark.parametrize(("classes", "c"), [(2, 1.0), (4, 1.0), (4, 0.05), (3, 20.0)])
def test_logreg_is_scikit_learns_model(classes, c):
    """The same minimiser as LogisticRegression(C=c) on the standardised mean embedding: probabilities within 1e-4
    of scikit-learn solved to tol 1e-10, and the same predictions as scikit-learn with its defaults."""
    frames, mask, labels = standardised_toy(60, 512, classes, seed=classes)
    model = fit_logreg(frames, mask, labels, classes, c=c, max_iter=1000)
    x = frames.astype(np.float64)
    normalised = x / np.linalg.norm(x, axis=-1, keepdims=True)
    features = StandardScaler().fit_transform((normalised * mask[..., None]).sum(1) / mask.sum(1, keepdims=True))
    probabilities = predict_proba(model, frames, mask)
    tight = LogisticRegression(C=c, max_iter=100_000, tol=1e-10).fit(features, labels)
    np.testing.assert_allclose(probabilities, tight.predict_proba(features), atol=1e-4)
    default = LogisticRegression(C=c, max_iter=1000).fit(features, labels)
    assert probabilities.argmax(1).tolist() == default.predict(features).tolist()


def test_logreg_never_predicts_a_category_absent_from_training():
    frames, mask, labels = standardised_toy(30, 16, 3, seed=0)
    labels = np.where(labels == 1, 2, labels)  # categories 0 and 2 of 3
    model = fit_logreg(frames, mask, labels, 3, c=1.0, max_iter=100)
    probabilities = predict_proba(model, frames, mask)
    assert probabilities[:, 1].max() < 1e-100 and set(probabilities.argmax(1)) <= {0, 2}


def test_exact_arithmetic_is_accurate():
    rng = np.random.default_rng(0)
    x = rng.uniform(-700, 700, 10_000)
    np.testing.assert_allclose(exact.exp(x), np.exp(x), rtol=4e-16)
    assert exact.exp(np.array([-800.0]))[0] == 0.0 and exact.exp(np.array([0.0]))[0] == 1.0
    y = np.exp(rng.uniform(-700, 700, 10_000))
    np.testing.assert_allclose(exact.log(y), np.log(y), rtol=1e-15, atol=1e-15)
    a, b = rng.normal(size=(37, 50)), rng.normal(size=(50, 3))
    np.testing.assert_allclose(exact.matmul(a, b), a @ b, rtol=1e-12, atol=1e-12)
    assert exact.tree_sum(np.arange(7.0), axis=0) == 21.0


@pytest.mark.parametrize(("enabled", "warn_only"), [(False, False), (True, False), (True, True)])
def test_training_leaves_the_callers_torch_settings_as_they_were(enabled, warn_only):
    frames, mask, labels = standardised_toy(12, 8, 2, seed=1)
    config = TrainConfig(epochs=2, lr=0.01, weight_decay=0.0, batch_size=4, seed=3, mixup_alpha=0.4)
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    threads = torch.get_num_threads()
    try:
        model = LinearProbe(8, 2)
        torch.manual_seed(11)
        state = torch.get_rng_state()
        with deterministic(5):
            assert torch.are_deterministic_algorithms_enabled()
            assert not torch.is_deterministic_algorithms_warn_only_enabled()
            assert torch.get_num_threads() == 1
        train_classifier(model, frames, mask, labels, config)
        fit_logreg(frames, mask, labels, 2, c=1.0, max_iter=20)
        with pytest.raises(ZeroDivisionError), deterministic(5):
            _ = 1 / 0
        assert torch.are_deterministic_algorithms_enabled() is enabled
        assert torch.is_deterministic_algorithms_warn_only_enabled() is warn_only
        assert torch.get_num_threads() == threads
        assert torch.equal(torch.get_rng_state(), state)  # nor the caller's random stream
    finally:
        torch.use_deterministic_algorithms(False)
