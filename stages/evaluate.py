"""evaluate: score one trained variant on the test videos -> metrics/<variant>.json, reports/<variant>.json, confusion.

metrics/<variant>.json holds the few numbers DVC compares (`dvc exp show`, `dvc metrics diff`); the report
holds everything else (intervals, per-class figures, support, encoder, each test video's prediction) for the
report stage and for people. plots/confusion/<variant>.csv is the predictions again, as DVC's confusion plot.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from clipvideo.cli import stage_main
from clipvideo.datasets import split_set
from clipvideo.embeddings import load_embeddings
from clipvideo.errors import PipelineError
from clipvideo.files import write_table, write_text_atomic
from clipvideo.metrics import DVC_METRICS, PREDICTION_COLUMNS, classification_metrics
from clipvideo.models import load_model, predict_proba, variant_inputs
from clipvideo.paths import ProjectPaths
from clipvideo.variants import variant_spec

SECTIONS = ("seed", "evaluate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("variant", help="which trained classifier to score (linear, transformer-mixup, logreg, ...)")


def run(paths: ProjectPaths, params: dict[str, Any], settings: dict[str, Any], args: argparse.Namespace) -> str:
    evaluate = params["evaluate"]
    variant_spec(args.variant)  # an unknown name fails before any file is read
    model_file = paths.model_file(args.variant)
    saved = load_model(model_file, args.variant)
    embeddings = load_embeddings(paths.embeddings_dir)
    data = split_set(paths, "test", embeddings)
    if data.categories != saved.categories:
        raise PipelineError(f"{model_file}: trained on categories {saved.categories}, split has {data.categories}")
    frames, mask = variant_inputs(saved.spec, data.frames, data.mask, data.ids)
    probabilities = predict_proba(saved.model, frames, mask)
    predicted = probabilities.argmax(1)
    found = classification_metrics(
        data.labels, probabilities, data.categories, evaluate["bootstrap"], evaluate["confidence"], params["seed"]
    )
    predictions = [
        {"id": i, "actual": data.categories[a], "predicted": data.categories[p]}
        for i, a, p in zip(data.ids, data.labels, predicted, strict=True)
    ]
    report = {"variant": args.variant, **found, "encoder": embeddings.meta.get("note", ""),
              "encoder_weights": embeddings.meta.get("pretrained", ""), "predictions": predictions}  # fmt: skip
    write_text_atomic(paths.report_file(args.variant), json.dumps(report, indent=2) + "\n")
    metrics = {name: found[name] for name in DVC_METRICS}
    write_text_atomic(paths.metrics_file(args.variant), json.dumps(metrics, indent=2) + "\n")
    write_table(paths.confusion_file(args.variant), PREDICTION_COLUMNS, predictions)  # the plot's data
    low, high = found["f1_micro_low"], found["f1_micro_high"]
    interval = "" if low is None else f" [{low:.3f}, {high:.3f}]"
    return (
        f"{args.variant}: {found['n_test']} test videos, f1_micro {found['f1_micro']:.3f}{interval}, "
        f"f1_macro {found['f1_macro']:.3f} -> {paths.metrics_file(args.variant)}, {paths.report_file(args.variant)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("evaluate", __doc__, SECTIONS, run, argv, add_arguments)


if __name__ == "__main__":
    sys.exit(main())
