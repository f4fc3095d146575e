"""Same bytes on any x86 machine? Fits every trained variant (and evaluate's metrics) on fixed synthetic data in
subprocesses under other BLAS kernels, SIMD levels and thread counts, and prints which combinations give other
bytes. A cell is the class of the output's sha256 in its column: A is the first row's, B the next other one ...

    python -m bench.determinism            # the whole table (a few minutes on 2 cores)
    python -m bench.determinism --quick    # fewer combinations

What a combination changes: OPENBLAS_CORETYPE picks the kernel of the OpenBLAS that numpy, scipy and
scikit-learn load (Haswell, SkylakeX, Prescott: what machines with AVX2, AVX-512, only SSE3 pick);
ATEN_CPU_CAPABILITY torch's own vector kernels; MKL_ENABLE_INSTRUCTIONS the MKL code path torch's matmuls take;
NPY_DISABLE_CPU_FEATURES numpy's SIMD loops (exp, log, ...); threads: OMP_NUM_THREADS and torch.set_num_threads.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = [
    "linear",
    "linear-mixup",
    "transformer",
    "transformer-mixup",
    "random_frame",
    "random_frame-mixup",
    "logreg",
]
ENV_KEYS = (
    "OPENBLAS_CORETYPE",
    "ATEN_CPU_CAPABILITY",
    "MKL_ENABLE_INSTRUCTIONS",
    "NPY_DISABLE_CPU_FEATURES",
    "MKL_CBWR",
)
THREADS = [1, 2]
NUMPY_AVX512 = "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"
# numpy refuses to disable a feature its build requires, so only the ones above its x86-64-v2 baseline
NUMPY_AVX2 = f"AVX AVX2 FMA3 F16C {NUMPY_AVX512}"


def synthetic(n: int = 64, frames: int = 16, dim: int = 512, classes: int = 4, seed: int = 0):
    """(videos, frames, dim) float16-rounded embeddings with a class signal, ragged masks, labels and ids."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centers = rng.normal(size=(classes, dim))
    x = centers[labels][:, None, :] + 2.0 * rng.normal(size=(n, frames, dim))
    mask = np.arange(frames)[None, :] < rng.integers(4, frames + 1, size=n)[:, None]
    ids = [f"video{i:03d}" for i in range(n)]
    return x.astype(np.float16), mask, labels.astype(np.int64), ids


def worker(variants: list[str], epochs: int, threads: list[int]) -> dict[str, str]:
    """sha256 of each variant's model file as save_model writes it (what DVC hashes), and of evaluate's metrics,
    fitted with each thread count in turn (torch.set_num_threads and threadpoolctl's limit for BLAS and OpenMP)."""
    from clipvideo.core.system import reproducible_cpu

    reproducible_cpu()  # as the train and evaluate stages do, before torch is imported
    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    from clipvideo.config.loading import load_params
    from clipvideo.config.variants import load_variants
    from clipvideo.evaluation.metrics import classification_metrics
    from clipvideo.modeling.classifiers import predict_proba, variant_inputs
    from clipvideo.modeling.data import LabelledSet
    from clipvideo.modeling.saved import save_model
    from clipvideo.modeling.training import fit

    params = load_params(REPO / "params.yaml")
    optim = params.train.optim.model_copy(update={"epochs": epochs})
    params = params.model_copy(update={"train": params.train.model_copy(update={"optim": optim})})
    specs = load_variants(REPO / "variants.yaml")
    frames, mask, labels, ids = synthetic()
    train, test = np.arange(0, 48), np.arange(48, 64)
    categories = ["a", "b", "c", "d"]
    data = LabelledSet([ids[i] for i in train], frames[train], mask[train], labels[train], categories, 0)
    hashes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for count, name in itertools.product(threads, variants):
            torch.set_num_threads(count)
            spec = specs[name]
            with threadpool_limits(count):
                x, m = variant_inputs(spec, data.frames, data.mask, data.ids)
                model, options, _ = fit(spec, data, x, m, params, name)
                path = Path(tmp) / f"{name}.pt"
                save_model(path, name, spec.kind, model, categories, options, {"model": "synthetic"}, {})
                tx, tm = variant_inputs(spec, frames[test], mask[test], [ids[i] for i in test])
                found = classification_metrics(labels[test], predict_proba(model, tx, tm), categories, 1000, 0.95, 42)
            hashes[f"{count} {name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
            hashes[f"{count} {name} eval"] = hashlib.sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()
    return hashes


def combinations(quick: bool) -> list[dict[str, str]]:
    """Each combination's environment (a key absent: the machine's own choice); every one runs both thread counts."""
    cores = ["Haswell", "SkylakeX", "Prescott"] + ([] if quick else [""])
    rows = [
        {"OPENBLAS_CORETYPE": core, "ATEN_CPU_CAPABILITY": aten}
        for core, aten in itertools.product(cores, ["", "avx2"] if not quick else [""])
    ]
    if quick:
        rows.append({"OPENBLAS_CORETYPE": "Haswell", "ATEN_CPU_CAPABILITY": "avx2"})
    # what else a machine without AVX-512 changes: MKL's code path (torch's matmuls), numpy's SIMD loops
    rows.append({"MKL_ENABLE_INSTRUCTIONS": "AVX2"})
    rows.append({"NPY_DISABLE_CPU_FEATURES": NUMPY_AVX512})
    rows.append(
        {
            "OPENBLAS_CORETYPE": "Haswell",
            "ATEN_CPU_CAPABILITY": "avx2",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2",
            "NPY_DISABLE_CPU_FEATURES": NUMPY_AVX2,
        }
    )
    return rows


def run_one(row: dict[str, str], variants: list[str], epochs: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS and not k.endswith("_NUM_THREADS")}
    env.update({k: v for k, v in row.items() if v})
    command = [sys.executable, "-m", "bench.determinism", "--worker", "--epochs", str(epochs), *variants]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{row}: the worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def label(row: dict[str, str]) -> list[str]:
    numpy_off = row.get("NPY_DISABLE_CPU_FEATURES", "")
    numpy_level = "no AVX" if "AVX2" in numpy_off else "no AVX-512" if numpy_off else "-"
    return [
        row.get("OPENBLAS_CORETYPE") or "-",
        row.get("ATEN_CPU_CAPABILITY") or "-",
        row.get("MKL_ENABLE_INSTRUCTIONS") or "-",
        numpy_level,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="*", default=VARIANTS)
    parser.add_argument("--epochs", type=int, default=2, help="train.optim.epochs for the torch variants")
    parser.add_argument("--quick", action="store_true", help="fewer combinations")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.variants, args.epochs, THREADS)))
        return
    from tabulate import tabulate

    rows = combinations(args.quick)
    results = []
    for row in rows:
        results.append(run_one(row, args.variants, args.epochs))
        print(f"{len(results)}/{len(rows)} {label(row)}", file=sys.stderr, flush=True)
    columns = [*args.variants, *(f"{name} eval" for name in args.variants)]
    classes: dict[str, list[str]] = {c: [] for c in columns}
    table = []
    for (row, hashes), threads in itertools.product(zip(rows, results, strict=True), THREADS):
        cells = []
        for column in columns:
            seen, digest = classes[column], hashes[f"{threads} {column}"]
            if digest not in seen:
                seen.append(digest)
            cells.append("ABCDEFGHIJ"[seen.index(digest)])
        table.append([*label(row), threads, *cells])
    headers = ["OPENBLAS_CORETYPE", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "numpy SIMD", "threads", *columns]
    print(tabulate(table, headers=headers, tablefmt="github"))
    print("\ndistinct outputs: " + ", ".join(f"{c} {len(s)}" for c, s in classes.items()))


if __name__ == "__main__":
    main()
