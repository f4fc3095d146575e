"""Classification metrics, with bootstrap intervals over the test videos."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
)


def resampled_f1(y_true: np.ndarray, y_pred: np.ndarray, draws: np.ndarray, average: str) -> np.ndarray:
    """f1 of every resample at once; `draws` (rounds, n) indexes the test videos.

    Matches scikit-learn's f1_score(average=...) with zero_division=0 on each resample: micro is
    the share correct, macro the mean over the categories present (true or predicted) in it.
    """
    truth, predicted = y_true[draws], y_pred[draws]
    if average == "micro":
        return (truth == predicted).mean(1)
    classes = np.union1d(y_true, y_pred)
    hits = np.stack([((truth == k) & (predicted == k)).sum(1) for k in classes], axis=1)
    sizes = np.stack([(truth == k).sum(1) + (predicted == k).sum(1) for k in classes], axis=1)
    f1 = np.divide(2 * hits, sizes, out=np.zeros(sizes.shape), where=sizes > 0)
    return f1.sum(1) / (sizes > 0).sum(1)


def bootstrap_draws(n: int, rounds: int, seed: int) -> np.ndarray:
    """Resamples of the n test videos with replacement, the same for every variant given the seed."""
    return np.random.default_rng(seed).integers(0, n, size=(rounds, n))


def percentile_interval(scores: np.ndarray, confidence: float) -> list[float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(scores, [tail, 100 - tail])
    return [round(float(low), 4), round(float(high), 4)]


def bootstrap_interval(
    y_true: np.ndarray, y_pred: np.ndarray, average: str, rounds: int, confidence: float, seed: int
) -> list[float]:
    """Percentile interval of f1 when the test videos are resampled with replacement."""
    if rounds == 0 or len(y_true) == 0:
        return []
    draws = bootstrap_draws(len(y_true), rounds, seed)
    return percentile_interval(resampled_f1(y_true, y_pred, draws, average), confidence)


def paired_difference_interval(
    y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, rounds: int, confidence: float, seed: int
) -> list[float]:
    """Interval of f1_micro(a) - f1_micro(b) over the same resamples of the test videos.

    Paired: both models are scored on each resample, so what they share (easy and hard videos)
    cancels; an interval that contains 0 means the test set cannot tell the two apart.
    """
    if rounds == 0 or len(y_true) == 0:
        return []
    draws = bootstrap_draws(len(y_true), rounds, seed)
    difference = resampled_f1(y_true, pred_a, draws, "micro") - resampled_f1(y_true, pred_b, draws, "micro")
    return percentile_interval(difference, confidence)


def with_interval(name: str, value: float, bounds: list[float]) -> dict[str, float | None]:
    """`name`, `name_low`, `name_high` as separate numbers (the bounds None without bootstrap)."""
    low, high = bounds or (None, None)
    return {name: value, f"{name}_low": low, f"{name}_high": high}


def classification_metrics(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    categories: Sequence[str],
    bootstrap: int,
    confidence: float,
    seed: int,
) -> dict:
    """Every figure of one variant on the test videos: flat numbers, then the per-class table."""
    labels = list(range(len(categories)))
    y_pred = probabilities.argmax(1)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    f1_micro = round(float(f1_score(y_true, y_pred, labels=labels, average="micro", zero_division=0)), 4)
    # over the categories present (true or predicted), as on every bootstrap resample
    f1_macro = round(float(f1_score(y_true, y_pred, average="macro", zero_division=0)), 4)
    return {
        "n_test": len(y_true),
        "confidence": confidence,
        **with_interval("f1_micro", f1_micro, bootstrap_interval(y_true, y_pred, "micro", bootstrap, confidence, seed)),
        **with_interval("f1_macro", f1_macro, bootstrap_interval(y_true, y_pred, "macro", bootstrap, confidence, seed)),
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
        "balanced_accuracy": round(float(balanced_accuracy_score(y_true, y_pred)), 4),
        "log_loss": round(float(log_loss(y_true, probabilities, labels=labels)), 4),
        "per_class": {
            name: {
                "precision": round(float(precision[i]), 4),
                "recall": round(float(recall[i]), 4),
                "f1": round(float(f1[i]), 4),
                "support": int(support[i]),
            }
            for i, name in enumerate(categories)
        },
    }
