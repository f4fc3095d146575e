"""Storage and training: bytes per video on disk, time to load the embeddings of the real dataset's size,
and time to train every variant on them.

Frames: JPEGs in one .npz per video, sampled from the generated 1-minute video (and from the default
sample's data/frames/ when `dvc repro` has run). Embeddings: random float16 values in the real shape
(1,728 videos x 100 frames x 512) written in the stage's layout, loaded as the train stage loads them,
then every trainable variant of variants.yaml fitted for 10 epochs on them.

    python bench/storage.py             # 10 epochs: about 15 minutes on 2 cores (the transformers dominate)
    python bench/storage.py --epochs 2  # per-epoch times in about 4 minutes
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import REPO, bench_frames, machine, table, timed

from clipvideo.config.declared import Declared
from clipvideo.config.loading import load_params
from clipvideo.config.variants import variants
from clipvideo.core.contracts import EMBEDDINGS_INDEX_COLUMNS
from clipvideo.core.tables import write_table
from clipvideo.embed.store import ARRAY, INDEX, META, load_embeddings
from clipvideo.modeling.classifiers import variant_inputs
from clipvideo.modeling.data import LabelledSet
from clipvideo.modeling.training import fit


def frames_rows(work: Path) -> list[list[object]]:
    rows = []
    for count in (16, 100):
        path = work / f"frames-{count}.npz"
        size = bench_frames(path, count)
        rows.append(["frames, generated 640x360 video", count, f"{size:,}", f"{size / count:,.0f}"])
    sample = sorted((REPO / "data" / "frames").glob("*.npz"))
    if sample:
        total = sum(p.stat().st_size for p in sample)
        frames = sum(len(np.load(p)["offsets"]) - 1 for p in sample)
        what = f"frames, default sample ({len(sample)} videos)"
        rows.append([what, frames // len(sample), f"{total // len(sample):,}", f"{total / frames:,.0f}"])
    return rows


def write_random_embeddings(directory: Path, videos: int, frames: int, dim: int) -> None:
    """The embed stage's layout (frames.npy float16, index.csv, meta.json) filled with random values."""
    directory.mkdir()
    array = np.lib.format.open_memmap(directory / ARRAY, mode="w+", dtype=np.float16, shape=(videos, frames, dim))
    rng = np.random.default_rng(0)
    for start in range(0, videos, 256):
        array[start : start + 256] = rng.standard_normal((min(256, videos - start), frames, dim), dtype=np.float32)
    array.flush()
    del array
    index = ({"id": f"{i:016x}", "n_frames": frames} for i in range(videos))
    write_table(directory / INDEX, EMBEDDINGS_INDEX_COLUMNS, index)
    (directory / META).write_text(json.dumps({"model": "random", "dim": dim, "max_frames": frames}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=1728, help="videos (default 1728, the real dataset)")
    parser.add_argument("--frames", type=int, default=100, help="frames per video (default 100)")
    parser.add_argument("--dim", type=int, default=512, help="embedding size (default 512, ViT-B-32)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs per variant (default 10)")
    args = parser.parse_args()
    print(f"machine: {machine()}\n")
    params = load_params(REPO / "params.yaml")
    optim = params.train.optim.model_copy(update={"epochs": args.epochs})
    params = params.model_copy(update={"train": params.train.model_copy(update={"optim": optim})})
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        rows = frames_rows(work)
        directory = work / "embeddings"
        write_random_embeddings(directory, args.videos, args.frames, args.dim)
        size = (directory / ARRAY).stat().st_size
        rows.append(
            ["embeddings float16", args.frames, f"{size // args.videos:,}", f"{size / args.videos / args.frames:,.0f}"]
        )
        print(table(["what", "frames per video", "bytes per video", "bytes per frame"], rows))

        loaded: dict[str, np.ndarray] = {}
        load_s = timed(lambda: loaded.update(frames=np.array(load_embeddings(directory).frames)))  # a real copy
        shape = f"{args.videos} x {args.frames} x {args.dim}"
        print(f"\nload {shape} float16 ({size / 1e6:.0f} MB, just written: page cache) into memory: {load_s:.2f} s")

        embeddings = load_embeddings(directory)
        categories = ["food", "art_music", "travel", "history"]
        data = LabelledSet(
            ids=embeddings.ids,
            frames=loaded["frames"],
            mask=embeddings.mask,
            labels=np.arange(args.videos) % len(categories),
            categories=categories,
            dropped=0,
        )
        timings = []
        for name, spec in variants(REPO / "variants.yaml").items():
            if spec.kind == "zeroshot":
                continue  # nothing to train
            frames, mask = variant_inputs(spec, data.frames, data.mask, data.ids)
            declared = Declared(params, spec.params, f"variants.yaml: {name}")
            seconds = timed(
                lambda spec=spec, frames=frames, mask=mask, declared=declared: fit(spec, data, frames, mask, declared)
            )
            if spec.kind == "logreg":
                timings.append([name, "until converged", f"{seconds:.1f}", "-"])
            else:
                timings.append([name, args.epochs, f"{seconds:.1f}", f"{seconds / args.epochs:.2f}"])
            print(f"  done: {name}", file=sys.stderr, flush=True)
    print(f"\nTraining on {args.videos} videos x {args.frames} frames (params.yaml train settings):\n")
    print(table(["variant", "epochs", "seconds", "s/epoch"], timings))
    print("\nrerun: python bench/storage.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
