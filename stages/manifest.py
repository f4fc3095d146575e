"""manifest: list every source video once, valid or invalid with a reason -> data/manifest.csv."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clipvideo.cli import stage_main
from clipvideo.contracts import MANIFEST_COLUMNS
from clipvideo.errors import PipelineError
from clipvideo.files import atomic_path, write_table
from clipvideo.manifest import count_by, read_source_csv, reason_kind, sample_rows, youtube_rows
from clipvideo.paths import ProjectPaths
from clipvideo.sample import generate_sample

SECTIONS = ("seed", "dataset", "sample")
KAGGLE_DATASET = "rajatrc1705/youtube-videos-dataset"
KAGGLE_PAGE = f"https://www.kaggle.com/datasets/{KAGGLE_DATASET}"


def build_sample_manifest(paths: ProjectPaths, params: dict[str, Any]) -> list[dict[str, str]]:
    """Render the synthetic sample under data/sample/ and list it."""
    if paths.sample_videos.exists():
        shutil.rmtree(paths.sample_videos)
    sample = params["sample"]
    videos = generate_sample(
        paths.sample_videos,
        params["dataset"]["categories"],
        sample["videos_per_category"],
        sample["min_duration_s"],
        sample["max_duration_s"],
        params["seed"],
        sample["distractor_opacity"],
    )
    return sample_rows(((v.category, v.path.relative_to(paths.root), v.title) for v in videos), paths.root)


def fetch_with_kagglehub(csv_path: Path, configured: str) -> None:
    """Download the Kaggle dataset into kagglehub's cache and copy its CSV to `csv_path` (dataset.csv=`configured`)."""
    try:
        import kagglehub

        folder = Path(kagglehub.dataset_download(KAGGLE_DATASET))
    except Exception as exc:  # no network, no credentials, API changes: all end the same way for the user
        raise PipelineError(
            f"dataset.csv={configured!r} does not exist and kagglehub could not fetch {KAGGLE_DATASET} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else 'no message'}); "
            f"download the CSV from {KAGGLE_PAGE} and save it as {configured} (or set dataset.csv)"
        ) from exc
    found = sorted(folder.rglob("*.csv"))
    if len(found) != 1:
        raise PipelineError(
            f"kagglehub fetched {KAGGLE_DATASET} into {folder} but found {len(found)} CSV files there, expected 1; "
            f"copy the right one to {configured}"
        )
    with atomic_path(csv_path) as tmp:
        shutil.copyfile(found[0], tmp)
    print(f"manifest: fetched {KAGGLE_DATASET} with kagglehub -> {configured}")


def build_youtube_manifest(paths: ProjectPaths, params: dict[str, Any]) -> list[dict[str, str]]:
    """Judge every row of the Kaggle CSV offline; data/sample/ is left empty (it is a DVC out)."""
    configured = params["dataset"]["csv"]
    csv_path = paths.root / configured
    if not csv_path.is_file():
        fetch_with_kagglehub(csv_path, configured)
    rows = youtube_rows(read_source_csv(csv_path), params["dataset"]["categories"])
    if paths.sample_videos.exists():
        shutil.rmtree(paths.sample_videos)
    paths.sample_videos.mkdir(parents=True)
    return rows


def counts_table(rows: list[dict[str, str]], categories: list[str]) -> str:
    """Per category: valid, invalid, and the invalid rows per reason kind."""
    kinds = sorted({reason_kind(row["reason"]) for row in rows if row["status"] == "invalid"})
    columns = ["valid", "invalid", *kinds]
    counts: Counter[tuple[str, str]] = Counter()
    for row in rows:
        labels = [row["status"]] + ([reason_kind(row["reason"])] if row["status"] == "invalid" else [])
        for label in labels:
            counts[(row["category"] or "(empty)", label)] += 1
            counts[("total", label)] += 1
    listed = [*categories, *sorted({category for category, _ in counts} - {*categories, "total"}), "total"]
    lines = [f"  {'category':<14}" + "".join(f"{column:>16}" for column in columns)]
    lines += [f"  {c[:13]:<14}" + "".join(f"{counts[(c, column)]:>16}" for column in columns) for c in listed]
    return "\n".join(lines)


def run(paths: ProjectPaths, params: dict[str, Any], settings: dict[str, Any], _: argparse.Namespace) -> str:
    source = params["dataset"]["source"]
    categories = params["dataset"]["categories"]
    rows = build_sample_manifest(paths, params) if source == "sample" else build_youtube_manifest(paths, params)
    write_table(paths.manifest, MANIFEST_COLUMNS, rows)
    print(counts_table(rows, categories))
    valid = count_by(rows, "status")[("valid",)]
    return f"{len(rows)} rows ({valid} valid) -> {paths.manifest}"


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("manifest", __doc__, SECTIONS, run, argv)


if __name__ == "__main__":
    sys.exit(main())
