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


def bootstrap_interval(
    y_true: np.ndarray, y_pred: np.ndarray, average: str, rounds: int, confidence: float, seed: int
) -> list[float]:
    """Percentile interval of f1 when the test videos are resampled with replacement."""
    if rounds == 0 or len(y_true) == 0:
        return []
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(y_true), size=(rounds, len(y_true)))
    scores = [f1_score(y_true[d], y_pred[d], average=average, zero_division=0) for d in draws]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(scores, [tail, 100 - tail])
    return [round(float(low), 4), round(float(high), 4)]


def classification_metrics(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    categories: Sequence[str],
    bootstrap: int,
    confidence: float,
    seed: int,
) -> dict:
    labels = list(range(len(categories)))
    y_pred = probabilities.argmax(1)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "n_test": len(y_true),
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
        "f1_micro": round(float(f1_score(y_true, y_pred, labels=labels, average="micro", zero_division=0)), 4),
        "f1_macro": round(float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)), 4),
        "balanced_accuracy": round(float(balanced_accuracy_score(y_true, y_pred)), 4),
        "f1_micro_ci": bootstrap_interval(y_true, y_pred, "micro", bootstrap, confidence, seed),
        "f1_macro_ci": bootstrap_interval(y_true, y_pred, "macro", bootstrap, confidence, seed),
        "log_loss": round(float(log_loss(y_true, probabilities, labels=labels)), 4),
        "confidence": confidence,
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
