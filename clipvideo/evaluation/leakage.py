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
from clipvideo.modeling import exact
from clipvideo.modeling.data import LabelledSet, split_set


def video_vectors(data: LabelledSet) -> np.ndarray:
    """One unit vector per video: the mean of its unit frame embeddings (masked), normalised, in float64 and in
    modeling.exact's arithmetic (no BLAS: a cosine at the threshold falls the same side on every machine)."""
    frames = np.asarray(data.frames, dtype=np.float64)
    frames = frames / np.maximum(np.sqrt(exact.tree_sum(frames * frames, axis=-1)), 1e-12)[..., None]
    mask = np.asarray(data.mask, dtype=np.float64)[..., None]
    mean = exact.tree_sum(frames * mask, axis=1) / np.maximum(exact.tree_sum(mask, axis=1), 1.0)
    return mean / np.maximum(np.sqrt(exact.tree_sum(mean * mean, axis=-1)), 1e-12)[:, None]


def near_duplicates(test: LabelledSet, train: LabelledSet, threshold: float) -> list[dict[str, object]]:
    """For each test video at or above `threshold` to its closest training video: both ids and the cosine."""
    train_vectors = video_vectors(train)
    pairs = []
    for row, vector in enumerate(video_vectors(test)):
        cosines = exact.tree_sum(train_vectors * vector, axis=1)  # one test video at a time: memory stays small
        column = int(cosines.argmax())
        cosine = round(float(cosines[column]), 4)
        if cosine >= threshold:
            pairs.append(
                {
                    "test_id": test.ids[row],
                    "train_id": train.ids[column],
                    "cosine": cosine,
                    "same_category": bool(test.labels[row] == train.labels[column]),
                }
            )
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
