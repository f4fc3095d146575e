"""The leakage check: test videos whose mean frame embedding is nearly identical to a training video's.

A grouped split keeps known series on one side; this finds what the keys missed (a re-upload under another
title and channel, a compilation of clips), by content. A video is the normalised mean of its normalised
frame embeddings, and a test video counts when its cosine to some training video is at or above
`check_leakage.cosine` -> metrics/leakage.json (the count, a DVC metric) and reports/leakage.json (the pairs).
"""

from __future__ import annotations

import numpy as np

from clipvideo.config.schema import CheckLeakageParams
from clipvideo.core.files import write_json_atomic
from clipvideo.core.paths import ProjectPaths
from clipvideo.embed.store import load_embeddings
from clipvideo.modeling.data import LabelledSet, split_set


def video_vectors(data: LabelledSet) -> np.ndarray:
    """One unit vector per video: the mean of its unit frame embeddings (masked), normalised (float64)."""
    frames = np.asarray(data.frames, dtype=np.float64)
    frames /= np.maximum(np.linalg.norm(frames, axis=-1, keepdims=True), 1e-12)
    mask = data.mask[..., None]
    mean = (frames * mask).sum(1) / np.maximum(mask.sum(1), 1)
    return mean / np.maximum(np.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)


def near_duplicates(test: LabelledSet, train: LabelledSet, threshold: float) -> list[dict[str, object]]:
    """For each test video at or above `threshold` to its closest training video: both ids and the cosine."""
    cosines = video_vectors(test) @ video_vectors(train).T
    closest = cosines.argmax(1)
    pairs = []
    for row, column in enumerate(closest):
        cosine = round(float(cosines[row, column]), 4)
        if cosine >= threshold:
            pairs.append({"test_id": test.ids[row], "train_id": train.ids[column], "cosine": cosine,
                          "same_category": bool(test.labels[row] == train.labels[column])})  # fmt: skip
    return sorted(pairs, key=lambda pair: (-pair["cosine"], pair["test_id"]))


def check_leakage(paths: ProjectPaths, params: CheckLeakageParams) -> str:
    """metrics/leakage.json and reports/leakage.json; returns the summary line."""
    embeddings = load_embeddings(paths.embeddings_dir)
    test, train = split_set(paths, "test", embeddings), split_set(paths, "train", embeddings)
    pairs = near_duplicates(test, train, params.cosine)
    found = {"near_duplicates": len(pairs), "n_test": len(test.ids)}
    write_json_atomic(paths.leakage_report, {**found, "cosine": params.cosine, "pairs": pairs})
    write_json_atomic(paths.leakage_metrics, found)
    return (
        f"{len(pairs)} of {len(test.ids)} test videos have a training video at cosine >= {params.cosine} "
        f"-> {paths.leakage_metrics}, {paths.leakage_report}"
    )
