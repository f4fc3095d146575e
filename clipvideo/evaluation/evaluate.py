"""The evaluate step: one trained variant scored on the test videos.

metrics/<variant>.json holds the few numbers DVC compares (`dvc exp show`, `dvc metrics diff`); the report
holds everything else (intervals, per-class figures, support, encoder, each test video's prediction) for the
report step and for people. plots/confusion/<variant>.csv is the predictions again, as DVC's confusion plot.
"""

from __future__ import annotations

import hashlib

from clipvideo.config.schema import EvaluateParams
from clipvideo.config.variants import Variant
from clipvideo.core.contracts import DVC_METRICS, PREDICTION_COLUMNS
from clipvideo.core.errors import PipelineError
from clipvideo.core.files import write_json_atomic
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.tables import write_table
from clipvideo.embed.store import load_embeddings
from clipvideo.evaluation.metrics import classification_metrics
from clipvideo.modeling.classifiers import predict_proba, variant_inputs
from clipvideo.modeling.data import LabelledSet, split_set
from clipvideo.modeling.saved import SavedModel, load_model


def test_set_digest(ids: list[str]) -> str:
    """A short name for the set of test videos scored: two reports compare only when theirs are equal."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:12]


def val_f1_micro(saved: SavedModel, spec: Variant, val: LabelledSet | None) -> float | None:
    """f1 (micro) on the val videos, what choices between variants and runs are made on (None without val)."""
    if val is None:
        return None
    predicted = predict_proba(saved.model, *variant_inputs(spec, val.frames, val.mask, val.ids)).argmax(1)
    return round(float((predicted == val.labels).mean()), 4)


def evaluate_variant(paths: ProjectPaths, name: str, spec: Variant, evaluate: EvaluateParams) -> str:
    """metrics/, reports/ and plots/confusion/ for one variant; returns the summary line."""
    model_file = paths.model_file(name)
    saved = load_model(model_file, name)
    embeddings = load_embeddings(paths.embeddings_dir)
    data = split_set(paths, "test", embeddings)
    if data.categories != saved.categories:
        raise PipelineError(f"{model_file}: trained on categories {saved.categories}, split has {data.categories}")
    frames, mask = variant_inputs(spec, data.frames, data.mask, data.ids)
    probabilities = predict_proba(saved.model, frames, mask)
    predicted = probabilities.argmax(1)
    found = classification_metrics(
        data.labels, probabilities, data.categories, evaluate.bootstrap, evaluate.confidence, evaluate.seed
    )
    val = split_set(paths, "val", embeddings, required=False)
    checked = {
        "n_test_missing": data.dropped,
        "test_set": test_set_digest(data.ids),
        "val_f1_micro": val_f1_micro(saved, spec, val),
    }
    predictions = [
        {"id": i, "actual": data.categories[a], "predicted": data.categories[p]}
        for i, a, p in zip(data.ids, data.labels, predicted, strict=True)
    ]
    report = {
        "variant": name,
        "scored_on": "test",
        **found,
        **checked,
        "selection": saved.selection,
        "encoder": embeddings.meta.get("note", ""),
        "encoder_weights": embeddings.meta.get("pretrained", ""),
        "predictions": predictions,
    }
    write_json_atomic(paths.report_file(name), report)
    write_json_atomic(paths.metrics_file(name), {metric: report[metric] for metric in DVC_METRICS})
    write_table(paths.confusion_file(name), PREDICTION_COLUMNS, predictions)  # the plot's data
    low, high = found["f1_micro_low"], found["f1_micro_high"]
    interval = "" if low is None else f" [{low:.3f}, {high:.3f}]"
    missing = f" ({data.dropped} without frames not scored)" if data.dropped else ""
    return (
        f"{name}: {found['n_test']} test videos{missing} (test set {checked['test_set']}), "
        f"f1_micro {found['f1_micro']:.3f}{interval}, f1_macro {found['f1_macro']:.3f} "
        f"-> {paths.metrics_file(name)}, {paths.report_file(name)}"
    )
