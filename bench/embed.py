"""Embedding speed: images/s through the embed loop against the bare model forward, fp32 and bf16.

The embed loop (`embed_missing`: read the stored frames, decode the JPEGs, normalise, forward in fixed
batches of 64, store float16 per video in a fresh per-video cache) runs on frames sampled from the
generated 1-minute video; the bare forward runs the same model on one ready tensor of the same batch
size and precision, in the same run: the limit the loop can reach. Then the cosine similarity between
the bf16 and the fp32 embeddings of the same frames.

    python bench/embed.py                  # ViT-B-32, 4 videos x 64 frames (about 2 minutes)
    python bench/embed.py --videos 8 --model ViT-B-16
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import bench_frames, machine, table, timed

from clipvideo.core.cache import VideoCache
from clipvideo.embed.batches import FORWARD_BATCH
from clipvideo.embed.embedder import BatchEmbedder, FramesFile, embed_here, embed_missing
from clipvideo.embed.encoder import encode_batch, load_encoder, preprocess_jpegs
from clipvideo.video.store import load_frame_jpegs


def stored_frames(directory: Path, videos: int, frames: int, size: int) -> list[FramesFile]:
    """`videos` frames files as the frames stage writes them (copies of one sampled video, each its own key)."""
    bench_frames(directory / "video.npz", frames, size)
    data = (directory / "video.npz").read_bytes()
    files = []
    for index in range(videos):
        path = directory / f"{index:016x}.npz"
        path.write_bytes(data)
        files.append(FramesFile(path.stem, path, frames, f"{index:064x}"))
    return files


def measure(
    model: str,
    pretrained: str,
    precision: str,
    videos: list[FramesFile],
    frames: int,
    work: Path,
    repeat: int,
) -> tuple[float, float, np.ndarray]:
    """(images/s through embed_missing, images/s of the bare forward, the stored embeddings)."""
    encoder = load_encoder(model, pretrained, seed=42, precision=precision)
    ready = preprocess_jpegs(load_frame_jpegs(videos[0].path)[:FORWARD_BATCH], encoder)
    encode_batch(encoder, ready)  # warm-up: first calls pick kernels
    images = len(videos) * frames
    stored: dict[str, np.ndarray] = {}

    def through_stage() -> None:
        cache = VideoCache(work / f"cache-{precision}", 10**12)
        cache.clear()
        entries = embed_missing(videos, lambda batches: embed_here(batches, BatchEmbedder(encoder)), cache, False)
        stored["rows"] = np.stack([np.load(entries[v.key].payload) for v in videos])

    def bare_forward() -> None:
        for _ in range(images // len(ready)):
            encode_batch(encoder, ready)

    stage_s = bare_s = float("inf")
    for _ in range(repeat):  # interleaved, best of each: load from other processes hits both alike
        stage_s = min(stage_s, timed(through_stage))
        bare_s = min(bare_s, timed(bare_forward) * images / (images // len(ready) * len(ready)))
    return images / stage_s, images / bare_s, stored["rows"].astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32", help="open_clip model name (default ViT-B-32)")
    parser.add_argument(
        "--pretrained", default="none", help="weights: none (seeded random), openai, ... (default none)"
    )
    parser.add_argument("--videos", type=int, default=4, help="videos (default 4)")
    parser.add_argument("--frames", type=int, default=64, help="frames per video (default 64)")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs of each (default 2)")
    args = parser.parse_args()
    print(f"machine: {machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    rows, stored = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        videos = stored_frames(work, args.videos, args.frames, 224)
        for precision in ("fp32", "bf16"):
            stage, bare, stored[precision] = measure(
                args.model, args.pretrained, precision, videos, args.frames, work, args.repeat
            )
            rows.append([precision, FORWARD_BATCH, f"{stage:.1f}", f"{bare:.1f}", f"{stage / bare:.0%}"])
            print(f"  done: {precision}", file=sys.stderr, flush=True)
    speedup = float(rows[1][2]) / float(rows[0][2])
    similarity = cosine(stored["fp32"], stored["bf16"])
    weights = "seeded random weights" if args.pretrained == "none" else f"weights {args.pretrained}"
    print(f"{args.model} ({weights}), {args.videos} videos x {args.frames} frames at 224 px, CPU:\n")
    print(table(["precision", "batch", "embed loop img/s", "bare forward img/s", "loop / bare"], rows))
    print(f"\nbf16 speedup over fp32 through the loop: {speedup:.2f}x")
    print(f"cosine(bf16, fp32) per frame: mean {similarity.mean():.5f}, min {similarity.min():.5f}")
    print("\nrerun: python bench/embed.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
