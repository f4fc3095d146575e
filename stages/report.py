"""report: one table of every evaluated variant, best first -> metrics/summary.md; their errors -> plots/errors/."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from clipvideo.cli import stage_main
from clipvideo.errors import PipelineError
from clipvideo.files import read_table, write_text_atomic
from clipvideo.gallery import write_error_images
from clipvideo.metrics import paired_difference_interval
from clipvideo.models import VARIANTS
from clipvideo.paths import ProjectPaths

SECTIONS = ("seed", "evaluate")

# f1_micro of the reference study on its 173 test videos (YouTube dataset, pretrained CLIP).
REFERENCE_F1_MICRO = {
    "linear": 0.965,
    "linear-mixup": 0.977,
    "transformer": 0.987,
    "transformer-mixup": 0.954,
    "random_frame": 0.844,
    "random_frame-mixup": 0.867,
}


def interval(values: list[float]) -> str:
    return f"[{values[0]:.3f}, {values[1]:.3f}]" if values else "-"


def read_predictions(paths: ProjectPaths, variant: str) -> dict[str, tuple[str, str]]:
    """id -> (actual, predicted) from the variant's confusion data."""
    rows = read_table(paths.confusion_file(variant), ("id", "actual", "predicted"))
    return {row["id"]: (row["actual"], row["predicted"]) for row in rows}


def gaps_to_best(
    ranked: list[dict[str, Any]], predictions: dict[str, dict[str, tuple[str, str]]], settings: dict, seed: int
) -> dict[str, list[float]]:
    """Paired bootstrap interval of f1_micro(variant) - f1_micro(best) for every other variant."""
    best = ranked[0]["variant"]
    ids = sorted(predictions[best])
    categories = sorted({label for pair in predictions[best].values() for label in pair})
    truth = np.array([categories.index(predictions[best][i][0]) for i in ids])
    best_pred = np.array([categories.index(predictions[best][i][1]) for i in ids])
    gaps = {}
    for m in ranked[1:]:
        theirs = predictions[m["variant"]]
        if sorted(theirs) != ids:
            raise PipelineError(
                f"metrics: {m['variant']} and {best} were scored on different test videos; rerun dvc repro"
            )
        categories += sorted({p for _, p in theirs.values()} - set(categories))
        pred = np.array([categories.index(theirs[i][1]) for i in ids])
        gaps[m["variant"]] = paired_difference_interval(
            truth, pred, best_pred, settings["bootstrap"], settings["confidence"], seed
        )
    return gaps


def verdict(gap: list[float]) -> str:
    if not gap:
        return "no interval (evaluate.bootstrap = 0)"
    return "inside the noise" if gap[0] <= 0 <= gap[1] else ("worse" if gap[1] < 0 else "better")


def rank(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best first: f1_micro, then f1_macro, then the name (a stable order for ties)."""
    return sorted(results, key=lambda m: (-m["f1_micro"], -m["f1_macro"], m["variant"]))


def summary_table(ranked: list[dict[str, Any]], gaps: dict[str, list[float]]) -> str:
    """Markdown: variants best first, with intervals, and which gaps to the best are inside the noise."""
    best = ranked[0]
    percent = f"{round(best['confidence'] * 100)}%"
    lines = [
        "# Results",
        "",
        f"Test videos: {best['n_test']}. Encoder: {best.get('encoder', '')}.",
        "",
        f"| variant | f1_micro | {percent} interval | f1_macro | {percent} interval | accuracy | balanced accuracy "
        f"| gap to best, paired {percent} interval | vs best | reference f1_micro (173 videos) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in ranked:
        gap = gaps.get(m["variant"], [])
        gap_text = "-" if m is best else f"{m['f1_micro'] - best['f1_micro']:+.3f} {interval(gap)}"
        reference = REFERENCE_F1_MICRO.get(m["variant"])
        lines.append(
            f"| {m['variant']} | {m['f1_micro']:.3f} | {interval(m['f1_micro_ci'])} | {m['f1_macro']:.3f} "
            f"| {interval(m['f1_macro_ci'])} | {m['accuracy']:.3f} | {m['balanced_accuracy']:.3f} | {gap_text} "
            f"| {'best' if m is best else verdict(gap)} | {'-' if reference is None else f'{reference:.3f}'} |"
        )
    tied = [m["variant"] for m in ranked[1:] if verdict(gaps.get(m["variant"], [])) == "inside the noise"]
    lines += ["", f"Best on this test set: {best['variant']}."]
    if tied:
        lines.append(
            f"Not distinguishable from it (the paired interval of the f1_micro gap contains 0): {', '.join(tied)}."
        )
    one_video = 1 / best["n_test"]
    lines.append(
        f"One test video is {one_video:.3f} of f1_micro here; the reference study drew conclusions from gaps "
        f"of one or two of its 173 videos (0.006 to 0.012)."
    )
    if any(m["variant"] == "zeroshot" and m.get("encoder_weights") == "none" for m in ranked):
        lines.append(
            "zeroshot compares frames with prompt embeddings of an untrained encoder: its text and image "
            f"spaces are unrelated, so it is at chance ({1 / len(best['per_class']):.2f} for "
            f"{len(best['per_class'])} categories) by construction; it means something only with pretrained weights."
        )
    return "\n".join(lines) + "\n"


def run(paths: ProjectPaths, params: dict[str, Any], settings: dict[str, Any], _: argparse.Namespace) -> str:
    missing = [v for v in VARIANTS if not paths.metrics_file(v).is_file()]
    if missing:
        raise PipelineError(f"{paths.metrics_file(missing[0])}: missing; run `dvc repro evaluate@{missing[0]}` first")
    # exactly the variants dvc.yaml declares as deps: a stray JSON in metrics/ is not a result
    results = [json.loads(paths.metrics_file(v).read_text(encoding="utf-8")) for v in VARIANTS]
    ranked = rank(results)
    predictions = {m["variant"]: read_predictions(paths, m["variant"]) for m in results}
    gaps = gaps_to_best(ranked, predictions, params["evaluate"], params["seed"])
    text = summary_table(ranked, gaps)
    write_text_atomic(paths.summary, text)
    print(text)
    wrong = sum(write_error_images(paths.errors_dir, predictions, paths.frames_dir).values())
    return f"{len(results)} variants -> {paths.summary}; {wrong} misclassified videos -> {paths.errors_dir}"


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("report", __doc__, SECTIONS, run, argv)


if __name__ == "__main__":
    sys.exit(main())
