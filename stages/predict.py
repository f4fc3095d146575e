"""predict: classify one new video (a file or an http(s)/YouTube url) with a trained variant.

Runs the pipeline's own code on it: the same frame sampling (frames_count, frames.*), the same JPEG
round trip, the same encoder and float16 storage as the embed stage, then the saved model. Prints
the category and the probability of every category. Not a DVC stage: it writes nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clipvideo.cli import stage_main
from clipvideo.clip import encode_batch, load_encoder, preprocess_jpegs, resolve_model_name, under_root
from clipvideo.embeddings import EMBEDDING_KEYS, encoder_settings
from clipvideo.errors import PipelineError
from clipvideo.fetch import Fetcher, FetchError, FetchSettings, is_remote
from clipvideo.manifest import LinkError, is_safe_id, parse_link, url_id
from clipvideo.models import SavedModel, load_model, predict_proba, variant_inputs
from clipvideo.paths import ProjectPaths
from clipvideo.variants import variant_spec
from clipvideo.video import VideoError, load_frame_jpegs, sample_frames, save_frames

SECTIONS = ("seed", "frames_count", "frames", "embed", "download")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a video file, an http(s) url or a YouTube id")
    parser.add_argument("--variant", default="linear", help="which trained classifier to use (default: linear)")


def local_or_fetched(source: str, work_dir: Path, paths: ProjectPaths, download: dict[str, Any]) -> tuple[Path, str]:
    """The video file and its id: a local file as is, a url downloaded the way the download stage does."""
    path = Path(source)
    if path.is_file():
        # A file the pipeline stored under its id keeps that id, so random_frame picks the same frame.
        return path, path.stem if is_safe_id(path.stem) else url_id(str(path.resolve()))
    if path.is_dir():
        raise PipelineError(f"{source}: is a directory; expected a video file, an http(s) url or a YouTube id")
    if not is_remote(source):
        raise PipelineError(f"{source}: no such file (and not an http(s) url or a YouTube id)")
    try:
        video_id = parse_link(source).id
        with Fetcher(FetchSettings.from_params(download, paths.root)) as fetcher:
            fetched = fetcher.fetch(source, work_dir, video_id)
    except (LinkError, FetchError) as exc:
        raise PipelineError(f"{source}: cannot download ({exc})") from exc
    return fetched.path, video_id


def frame_embeddings(video: Path, work_dir: Path, params: dict[str, Any], device: str, root: Path) -> np.ndarray:
    """(frames, dim) float16, exactly as the frames and embed stages would store them."""
    frames = params["frames"]
    try:
        sampled = sample_frames(video, params["frames_count"], frames["size"], frames["mode"])
    except VideoError as exc:
        raise PipelineError(f"{video}: unreadable video ({exc})") from exc
    packed = work_dir / "frames.npz"
    save_frames(packed, sampled)  # the same JPEG round trip as the stored frames
    embed = params["embed"]
    model, pretrained = under_root(embed["model"], embed["pretrained"], root)
    encoder = load_encoder(model, pretrained, params["seed"], device, embed["precision"])
    return encode_batch(encoder, preprocess_jpegs(load_frame_jpegs(packed), encoder)).astype(np.float16)


def check_encoder(saved: SavedModel, params: dict[str, Any], model_file: Path, root: Path) -> None:
    """A model only means something on embeddings made the way its training embeddings were: the same encoder
    (model, weights, seed, precision) on the same frames (frames_count, frames.size, frames.mode)."""
    model, _ = under_root(params["embed"]["model"], params["embed"]["pretrained"], root)
    now = encoder_settings(params, resolve_model_name(model), EMBEDDING_KEYS)
    differs = [
        f"{EMBEDDING_KEYS[key]} {saved.encoder.get(key)!r} (params.yaml now: {now[key]!r})"
        for key in EMBEDDING_KEYS
        if saved.encoder.get(key) != now[key]
    ]
    if differs:
        raise PipelineError(f"{model_file}: trained on embeddings made with {', '.join(differs)}; run dvc repro first")


def run(paths: ProjectPaths, params: dict[str, Any], settings: dict[str, Any], args: argparse.Namespace) -> str:
    variant_spec(args.variant)
    model_file = paths.model_file(args.variant)
    saved = load_model(model_file, args.variant)
    check_encoder(saved, params, model_file, paths.root)
    with tempfile.TemporaryDirectory(prefix="predict-") as tmp:
        work_dir = Path(tmp)
        video, video_id = local_or_fetched(args.source, work_dir, paths, {**params["download"], **settings["download"]})
        embeddings = frame_embeddings(video, work_dir, params, settings["embed"]["device"], paths.root)
    frames, mask = variant_inputs(saved.spec, embeddings[None], np.ones((1, len(embeddings)), dtype=bool), [video_id])
    probabilities = predict_proba(saved.model, frames, mask)[0]
    ranked = sorted(zip(saved.categories, probabilities, strict=True), key=lambda pair: -pair[1])
    print(f"category: {ranked[0][0]}")
    for category, probability in ranked:
        print(f"  {category:<20} {probability:.4f}")
    return f"{args.source}: {ranked[0][0]} ({args.variant}, {len(embeddings)} frames)"


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("predict", __doc__, SECTIONS, run, argv, add_arguments)


if __name__ == "__main__":
    sys.exit(main())
