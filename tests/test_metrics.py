"""Bootstrap intervals and the report's verdicts on which differences are inside the noise."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from clipvideo.evaluation.metrics import bootstrap_draws, bootstrap_interval, paired_difference_interval, resampled_f1
from clipvideo.evaluation.reference import load_reference
from clipvideo.evaluation.report import rank, summary_table
from tests.conftest import REPO


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_resampled_f1_matches_scikit_learn_on_every_resample(average):
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 4, 30), rng.integers(0, 4, 30)
    draws = bootstrap_draws(30, 50, seed=1)
    expected = [f1_score(y_true[d], y_pred[d], average=average, zero_division=0) for d in draws]
    np.testing.assert_allclose(resampled_f1(y_true, y_pred, draws, average), expected)


def test_bootstrap_interval_is_seeded_and_narrows_with_more_videos():
    rng = np.random.default_rng(2)
    y_true = rng.integers(0, 4, 400)
    y_pred = np.where(rng.random(400) < 0.8, y_true, (y_true + 1) % 4)  # about 80% right
    small = bootstrap_interval(y_true[:40], y_pred[:40], "micro", 1000, 0.95, seed=3)
    large = bootstrap_interval(y_true, y_pred, "micro", 1000, 0.95, seed=3)
    assert small == bootstrap_interval(y_true[:40], y_pred[:40], "micro", 1000, 0.95, seed=3)
    assert large != bootstrap_interval(y_true, y_pred, "micro", 1000, 0.95, seed=4)
    accuracy = float((y_true == y_pred).mean())
    assert large[0] < accuracy < large[1]
    assert large[1] - large[0] < small[1] - small[0]
    assert 0.05 < large[1] - large[0] < 0.11  # about 2 x 1.96 x sqrt(0.8 x 0.2 / 400) = 0.078
    assert bootstrap_interval(y_true, y_true, "macro", 200, 0.95, seed=3) == [1.0, 1.0]
    assert bootstrap_interval(y_true, y_pred, "micro", 0, 0.95, seed=3) == []


def test_paired_difference_interval():
    rng = np.random.default_rng(5)
    y_true = rng.integers(0, 4, 200)
    good = np.where(rng.random(200) < 0.9, y_true, (y_true + 1) % 4)
    one_more_wrong = good.copy()
    one_more_wrong[np.flatnonzero(good == y_true)[0]] = (y_true[0] + 2) % 4
    assert paired_difference_interval(y_true, good, good, 500, 0.95, seed=1) == [0.0, 0.0]
    low, high = paired_difference_interval(y_true, one_more_wrong, good, 500, 0.95, seed=1)
    assert low < 0 <= high  # one video out of 200: inside the noise
    bad = (y_true + 1) % 4
    assert paired_difference_interval(y_true, bad, good, 500, 0.95, seed=1)[1] < -0.8


def metrics(variant: str, f1: float, interval: list[float], val: float) -> dict:
    return {
        "variant": variant,
        "n_test": 8,
        "n_test_missing": 0,
        "test_set": "0123456789ab",
        "val_f1_micro": val,
        "f1_micro": f1,
        "f1_macro": f1,
        "accuracy": f1,
        "balanced_accuracy": f1,
        "f1_micro_low": interval[0],
        "f1_micro_high": interval[1],
        "f1_macro_low": interval[0],
        "f1_macro_high": interval[1],
        "confidence": 0.95,
        "per_class": {"a": {"f1": f1, "support": 4}, "b": {"f1": f1, "support": 4}},
        "encoder": "tiny",
        "encoder_weights": "none",
    }


def test_summary_ranks_on_val_and_marks_the_noise():
    results = [
        metrics("zeroshot", 0.5, [0.25, 0.75], val=0.25),
        metrics("linear", 1.0, [1.0, 1.0], val=0.75),
        metrics("logreg", 0.875, [0.6, 1.0], val=0.5),
    ]
    reference = load_reference(REPO / "reference.yaml")
    leakage = {"near_duplicates": 0, "n_test": 8, "cosine": 0.999}
    gaps = {"logreg": [-0.375, 0.0], "zeroshot": [-0.75, -0.25]}
    text = summary_table(rank(results), gaps, reference, [], leakage)
    ranking, per_class = text.split("## Per category")
    rows = [line for line in ranking.splitlines() if line.startswith("| ") and not line.startswith("| variant")]
    assert [row.split(" | ")[0] for row in rows] == ["| linear", "| logreg", "| zeroshot"]
    assert "| chosen |" in rows[0] and "inside the noise" in rows[1] and "| worse |" in rows[2]
    assert "| 0.965 |" in rows[0]  # the reference study's linear result, under its protocol
    assert "Not distinguishable from it on test (the paired interval of the f1_micro gap contains 0): logreg." in text
    # val, not test, decides: a variant better on test but worse on val is ranked below
    flipped = rank([metrics("linear", 0.5, [0.2, 0.8], val=0.75), metrics("logreg", 1.0, [1.0, 1.0], val=0.5)])
    assert [m["variant"] for m in flipped] == ["linear", "logreg"]
    assert "at chance (0.50 for 2 categories)" in text
    assert "| linear | 1.000 | 1.000 |" in per_class and "Test videos per category: a 4, b 4." in per_class
