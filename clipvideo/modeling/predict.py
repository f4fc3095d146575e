"""Classifying one new video (a file, an http(s) url or a YouTube id) with a trained variant.

It runs the pipeline's own steps on it: the frames step's sampling and frame store (frames_count, frames.*),
the embed step's embedder (the same encoder, batches and float16 rows), then the saved model. A model only
means something on embeddings made the way its training embeddings were, so any difference stops it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from clipvideo.acquire.fetch import Cookies, Fetcher, FetchError, is_remote
from clipvideo.acquire.links import LinkError, parse_link
from clipvideo.config.schema import Params, Settings
from clipvideo.config.variants import variant_spec
from clipvideo.core.errors import PipelineError
from clipvideo.core.ids import is_safe_id, url_id
from clipvideo.core.paths import ProjectPaths
from clipvideo.embed.batches import plan_batches
from clipvideo.embed.embedder import BatchEmbedder, embed_here
from clipvideo.embed.encoder import ClipEncoder, encoder_identity, open_encoder
from clipvideo.embed.store import EMBEDDING_KEYS, check_same_settings, encoder_record
from clipvideo.modeling.classifiers import predict_proba, variant_inputs
from clipvideo.modeling.saved import load_model
from clipvideo.video.frames import decode_video, frames_made_with
from clipvideo.video.store import load_frame_jpegs

# Printed under the answer of a model trained on an untrained encoder's embeddings (the default sample run).
UNTRAINED_NOTE = ("note: the encoder has random weights (embed.pretrained: none), so this answer only shows that the "
                  "pipeline runs; a correct one needs pretrained weights (embed.pretrained: openai)")  # fmt: skip


def local_or_fetched(source: str, work_dir: Path, paths: ProjectPaths, params: Params, settings: Settings
                     ) -> tuple[Path, str]:  # fmt: skip
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
        cookies = Cookies.from_settings(settings.download, paths.root)
        with Fetcher(params.download, settings.download, cookies) as fetcher:
            fetched = fetcher.fetch(source, work_dir, video_id)
    except (LinkError, FetchError) as exc:
        raise PipelineError(f"{source}: cannot download ({exc})") from exc
    return fetched.path, video_id


def video_embeddings(video: Path, paths: ProjectPaths, params: Params, settings: Settings
                     ) -> tuple[np.ndarray, ClipEncoder]:  # fmt: skip
    """(frames, dim) float16: the frames step's decode_video, then the embed step's embedder, as they store them;
    and the encoder."""
    verdict, frames, _ = decode_video(video, params.frames_count, params.frames, 1, settings.frames)
    if frames is None:
        raise PipelineError(f"{video}: unreadable video ({verdict['reason']})")
    jpegs = load_frame_jpegs(frames)
    encoder = open_encoder(params.embed, settings.embed.device, paths.root)
    results = embed_here(plan_batches([len(jpegs)], lambda _: jpegs), BatchEmbedder(encoder))
    return np.concatenate([result.features for result in results]), encoder


def predict_video(paths: ProjectPaths, source: str, variant: str, params: Params, settings: Settings,
                  model: Path | None = None) -> str:  # fmt: skip
    """Print the category and the probability of every category; returns the summary line. `model`: another
    file than models/<variant>.pt, such as one `dvc artifacts get` fetched from a commit or experiment."""
    spec = variant_spec(variant, paths.variants)
    if model is not None and not model.is_file():
        raise PipelineError(f"{model}: no such model file (--model)")
    model_file = model or paths.model_file(variant)
    saved = load_model(model_file, variant)
    identity_now = encoder_identity(params.embed, paths.root)  # files by content: a replaced one differs
    frames_now = frames_made_with(params.frames_count, params.frames)
    now = {**encoder_record(params.embed, identity_now), **frames_now}
    check_same_settings(saved.encoder, now, EMBEDDING_KEYS, str(model_file), "trained on embeddings made with",
                        "params.yaml now", "run dvc repro first")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="predict-") as tmp:
        video, video_id = local_or_fetched(source, Path(tmp), paths, params, settings)
        embeddings, encoder = video_embeddings(video, paths, params, settings)
    frames, mask = variant_inputs(spec, embeddings[None], np.ones((1, len(embeddings)), dtype=bool), [video_id])
    probabilities = predict_proba(saved.model, frames, mask)[0]
    ranked = sorted(zip(saved.categories, probabilities, strict=True), key=lambda pair: -pair[1])
    print(f"category: {ranked[0][0]}")
    for category, probability in ranked:
        print(f"  {category:<20} {probability:.4f}")
    if not encoder.is_pretrained:
        print(UNTRAINED_NOTE)
    return f"{source}: {ranked[0][0]} ({variant}, {len(embeddings)} frames)"
