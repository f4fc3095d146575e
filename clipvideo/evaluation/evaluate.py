"""The evaluate step: one trained variant scored on the test videos.

metrics/<variant>.json holds the few numbers DVC compares (`dvc exp show`, `dvc metrics diff`); the report
holds everything else (intervals, per-class figures, support, encoder, each test video's prediction) for the
report step and for people. plots/confusion/<variant>.csv is the predictions again, as DVC's confusion plot.
"""

from __future__ import annotations

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
from clipvideo.modeling.data import split_set
from clipvideo.modeling.saved import load_model


def evaluate_variant(paths: ProjectPaths, name: str, spec: Variant, evaluate: EvaluateParams, seed: int) -> str:
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
        data.labels, probabilities, data.categories, evaluate.bootstrap, evaluate.confidence, seed
    )
    predictions = [
        {"id": i, "actual": data.categories[a], "predicted": data.categories[p]}
        for i, a, p in zip(data.ids, data.labels, predicted, strict=True)
    ]
    report = {"variant": name, **found, "encoder": embeddings.meta.get("note", ""),
              "encoder_weights": embeddings.meta.get("pretrained", ""), "predictions": predictions}  # fmt: skip
    write_json_atomic(paths.report_file(name), report)
    write_json_atomic(paths.metrics_file(name), {metric: found[metric] for metric in DVC_METRICS})
    write_table(paths.confusion_file(name), PREDICTION_COLUMNS, predictions)  # the plot's data
    low, high = found["f1_micro_low"], found["f1_micro_high"]
    interval = "" if low is None else f" [{low:.3f}, {high:.3f}]"
    return (
        f"{name}: {found['n_test']} test videos, f1_micro {found['f1_micro']:.3f}{interval}, "
        f"f1_macro {found['f1_macro']:.3f} -> {paths.metrics_file(name)}, {paths.report_file(name)}"
    )
