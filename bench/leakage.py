"""Near-duplicates across sides: the project's grouped split (data/split.csv) against random video-by-video splits
of the same videos, after `dvc repro` (docs/models.md#the-leakage-check).

    python -m bench.leakage [--root .] [--splits 5]

Each random split is scikit-learn's train_test_split of the grouped split's train and test videos, stratified by
category, with the same test share: how videos were split before series were kept together.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from bench.common import table
from clipvideo.config.loading import load_params
from clipvideo.core.paths import ProjectPaths
from clipvideo.embed.store import load_embeddings
from clipvideo.evaluation.leakage import near_duplicates
from clipvideo.modeling.data import LabelledSet, split_set


def part(videos: LabelledSet, keep: np.ndarray) -> LabelledSet:
    ids = [videos.ids[i] for i in keep]
    return LabelledSet(ids, videos.frames[keep], videos.mask[keep], videos.labels[keep], videos.categories, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--splits", type=int, default=5, help="random splits to draw")
    args = parser.parse_args()
    paths = ProjectPaths(args.root)
    threshold = load_params(paths.params).check_leakage.cosine
    embeddings = load_embeddings(paths.embeddings_dir)
    train, test = split_set(paths, "train", embeddings), split_set(paths, "test", embeddings)
    rows = [["grouped (data/split.csv)", len(test.ids), len(near_duplicates(test, train, threshold))]]
    both = LabelledSet(
        train.ids + test.ids,
        np.concatenate([train.frames, test.frames]),
        np.concatenate([train.mask, test.mask]),
        np.concatenate([train.labels, test.labels]),
        train.categories,
        0,
    )
    everyone = np.arange(len(both.ids))
    for seed in range(args.splits):
        left, right = train_test_split(everyone, test_size=len(test.ids), random_state=seed, stratify=both.labels)
        pairs = near_duplicates(part(both, right), part(both, left), threshold)
        rows.append([f"random, video by video (seed {seed})", len(right), len(pairs)])
    print(table(["split", "test videos", f"with a training video at cosine >= {threshold}"], rows))


if __name__ == "__main__":
    main()
