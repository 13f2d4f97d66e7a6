"""Tests of common.metrics.classification against hand-computed values and scikit-learn."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from common.errors import DataError
from common.metrics import (
    bootstrap_auc_ci,
    choose_thresholds,
    compute_classification_metrics,
    per_class_auc,
    rank_auc,
    threshold_metrics,
)

NAN = np.nan
# Class A: all 6 labels known. Class B: rows 1 and 5 unknown, and a tie at 0.7 between two positives and a negative.
Y_TRUE = np.array([[0, 1], [0, NAN], [1, 0], [1, 1], [0, 0], [1, NAN]])
Y_PROB = np.array([[0.1, 0.7], [0.4, 0.2], [0.35, 0.3], [0.8, 0.7], [0.6, 0.7], [0.9, 0.5]])
NAMES = ["A", "B"]

# A: positives 0.35, 0.8, 0.9 vs negatives 0.1, 0.4, 0.6 -> pairs won 1 + 3 + 3 = 7 of 9.
# B (known rows 0, 2, 3, 4): positives 0.7, 0.7 vs negatives 0.3, 0.7 -> each wins 1 + 1/2 (tie) -> 3 of 4.
AUC_A, AUC_B = 7 / 9, 3 / 4
# Youden J (pred = prob >= t). A: t=0.9 1/3, t=0.8 2/3 - 0 = 2/3 (max), t=0.6 1/3, t=0.4 0, t=0.35 1/3.
# B: t=0.7 tpr 1 - fpr 1/2 = 1/2 (max), t=0.3 0.
THRESHOLDS = [0.8, 0.7]


def test_per_class_auc_hand_values() -> None:
    np.testing.assert_allclose(per_class_auc(Y_TRUE, Y_PROB), [AUC_A, AUC_B], rtol=1e-12)


def test_choose_thresholds_youden_hand_values() -> None:
    assert choose_thresholds(Y_TRUE, Y_PROB).tolist() == THRESHOLDS


@pytest.mark.parametrize(
    "labels",
    [[0, 0, 0, 0], [1, 1, NAN, 1], [NAN, NAN, NAN, NAN]],
    ids=["all-negative", "all-positive-with-unknown", "all-unknown"],
)
def test_single_label_value_gives_half_threshold_and_nan_auc(labels: list[float]) -> None:
    y_true = np.column_stack([[0, 1, 0, 1], labels])
    y_prob = np.array([[0.2, 0.9], [0.8, 0.1], [0.3, 0.4], [0.6, 0.7]])
    assert choose_thresholds(y_true, y_prob).tolist() == [0.6, 0.5]
    aucs = per_class_auc(y_true, y_prob)
    assert aucs[0] == 1.0 and math.isnan(aucs[1])


def test_choose_thresholds_clips_inverse_predictor_to_one() -> None:
    # Scores ranked exactly backwards: every J <= 0, so the inf "predict nothing" threshold wins, clipped to 1.
    assert choose_thresholds([[1], [1], [0], [0]], [[0.1], [0.2], [0.8], [0.9]]).tolist() == [1.0]


def test_threshold_metrics_hand_values_at_half() -> None:
    result = threshold_metrics(Y_TRUE, Y_PROB, 0.5)
    a, b = result["per_class"]
    # A: pred [0,0,0,1,1,1] vs [0,0,1,1,0,1] -> tn 2 (rows 0,1), fp 1 (row 4), fn 1 (row 2), tp 2 (rows 3,5).
    assert a["confusion"] == {"tn": 2, "fp": 1, "fn": 1, "tp": 2}
    assert (a["accuracy"], a["precision"], a["recall"], a["f1"]) == pytest.approx((4 / 6, 2 / 3, 2 / 3, 2 / 3))
    # B known rows: pred [1,0,1,1] vs [1,0,1,0] -> tn 1, fp 1, fn 0, tp 2; F1 = 2 (2/3)(1) / (5/3) = 0.8.
    assert b["confusion"] == {"tn": 1, "fp": 1, "fn": 0, "tp": 2}
    assert (b["accuracy"], b["precision"], b["recall"], b["f1"]) == pytest.approx((3 / 4, 2 / 3, 1.0, 0.8))
    assert result["macro"] == pytest.approx(
        {"accuracy": (4 / 6 + 3 / 4) / 2, "precision": 2 / 3, "recall": (2 / 3 + 1) / 2, "f1": (2 / 3 + 0.8) / 2}
    )


def test_threshold_metrics_hand_values_at_youden() -> None:
    a, b = threshold_metrics(Y_TRUE, Y_PROB, THRESHOLDS)["per_class"]
    # A at 0.8: pred [0,0,0,1,0,1] -> tn 3, fp 0, fn 1, tp 2; precision 1, recall 2/3, F1 = (4/3) / (5/3) = 0.8.
    assert a["confusion"] == {"tn": 3, "fp": 0, "fn": 1, "tp": 2}
    assert (a["threshold"], a["accuracy"], a["precision"], a["recall"], a["f1"]) == pytest.approx(
        (0.8, 5 / 6, 1.0, 2 / 3, 0.8)
    )
    # B at 0.7 predicts the same as at 0.5 (no known score strictly between).
    assert b["confusion"] == {"tn": 1, "fp": 1, "fn": 0, "tp": 2}


def test_nan_labels_are_masked_not_counted() -> None:
    # Filling B's unknown rows with either label must change nothing computed from the known rows only.
    known_only = threshold_metrics(Y_TRUE[[0, 2, 3, 4]], Y_PROB[[0, 2, 3, 4]], 0.5)["per_class"][1]
    assert threshold_metrics(Y_TRUE, Y_PROB, 0.5)["per_class"][1] == known_only
    assert per_class_auc(Y_TRUE, Y_PROB)[1] == per_class_auc(Y_TRUE[[0, 2, 3, 4]], Y_PROB[[0, 2, 3, 4]])[1]


def test_compute_classification_metrics_hand_values() -> None:
    m = compute_classification_metrics(Y_TRUE, Y_PROB, NAMES, thresholds=THRESHOLDS, n_boot=200)
    a, b = m["per_class"]
    assert m["n_images"] == 6 and m["class_names"] == NAMES
    assert (a["auc"], b["auc"], m["mean_auc"]) == pytest.approx((AUC_A, AUC_B, (AUC_A + AUC_B) / 2))
    assert (a["prevalence"], a["n_positive"], b["prevalence"], b["n_positive"]) == (0.5, 3, 0.5, 2)
    # A squared errors: .01 + .16 + .4225 + .04 + .36 + .01 = 1.0025; B (known): .09 + .09 + .09 + .49 = .76.
    assert a["rmse"] == pytest.approx(math.sqrt(1.0025 / 6))
    assert b["rmse"] == pytest.approx(math.sqrt(0.76 / 4))
    assert m["rmse"] == pytest.approx(math.sqrt((1.0025 + 0.76) / 10))
    assert "threshold" not in a["at_0.5"] and a["at_0.5"]["confusion"] == {"tn": 2, "fp": 1, "fn": 1, "tp": 2}
    assert a["at_threshold"]["threshold"] == 0.8
    assert m["macro_at_threshold"] == pytest.approx(
        {"accuracy": (5 / 6 + 3 / 4) / 2, "precision": (1 + 2 / 3) / 2, "recall": (2 / 3 + 1) / 2, "f1": 0.8}
    )
    assert m["threshold_source"] == "validation" and m["undefined_auc_classes"] == []


def test_compute_without_thresholds_uses_half() -> None:
    m = compute_classification_metrics(Y_TRUE, Y_PROB, NAMES, n_boot=20)
    assert m["threshold_source"] == "0.5 (no validation predictions)"
    assert m["macro_at_threshold"] == m["macro_at_0.5"]
    assert [e["at_threshold"]["threshold"] for e in m["per_class"]] == [0.5, 0.5]


def test_single_value_class_is_undefined_and_excluded_from_mean() -> None:
    y_true = np.column_stack([Y_TRUE, [0, 0, NAN, 0, 0, 0]])
    y_prob = np.column_stack([Y_PROB, [0.1, 0.9, 0.2, 0.3, 0.4, 0.5]])
    m = compute_classification_metrics(y_true, y_prob, [*NAMES, "C"], n_boot=50)
    c = m["per_class"][2]
    assert c["auc"] is None and c["auc_ci"] is None
    assert m["undefined_auc_classes"] == ["C"]
    assert m["mean_auc"] == pytest.approx((AUC_A + AUC_B) / 2)
    assert c["prevalence"] == 0.0 and c["n_positive"] == 0


def test_metrics_are_strict_json() -> None:
    y_true = np.column_stack([Y_TRUE, [NAN] * 6])
    m = compute_classification_metrics(y_true, np.column_stack([Y_PROB, [0.5] * 6]), [*NAMES, "C"], n_boot=10)

    def refuse(constant: str) -> None:
        raise ValueError(f"non-JSON constant {constant}")

    assert json.loads(json.dumps(m), parse_constant=refuse) == m
    assert m["per_class"][2]["prevalence"] is None and m["per_class"][2]["at_0.5"]["f1"] is None


@pytest.mark.parametrize(
    ("y_true", "y_score"),
    [
        (np.arange(40) % 2, np.round(np.random.default_rng(1).random(40), 1)),
        ([0, 1, 0, 1, 1], [0.5] * 5),
        ([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]),
        ([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]),
        (np.random.default_rng(2).integers(0, 2, 300), np.random.default_rng(3).integers(0, 7, 300) / 6),
    ],
    ids=["many-ties", "all-tied", "perfect", "inverse", "large-ties"],
)
def test_rank_auc_equals_sklearn(y_true: np.ndarray, y_score: np.ndarray) -> None:
    assert float(rank_auc(y_true, y_score)) == pytest.approx(roc_auc_score(y_true, y_score), rel=1e-12)


def test_rank_auc_weights_equal_repeated_rows() -> None:
    rng = np.random.default_rng(4)
    y, s = rng.integers(0, 2, 50), np.round(rng.random(50), 1)
    counts = rng.integers(0, 4, size=(3, 50))
    expected = [roc_auc_score(np.repeat(y, k), np.repeat(s, k)) for k in counts]
    np.testing.assert_allclose(rank_auc(y, s, counts), expected, rtol=1e-12)
    assert math.isnan(float(rank_auc([1, 1], [0.2, 0.3])))


def _signal_data(n: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=(n, n_classes)).astype(float)
    p = 0.3 * y + 0.7 * rng.random((n, n_classes))  # overlapping scores: AUC about 0.8
    return y, p


def test_bootstrap_ci_contains_estimate_and_is_deterministic() -> None:
    y, p = _signal_data(200, 3, seed=5)
    y[::7, 1] = NAN
    first = bootstrap_auc_ci(y, p, n_boot=300, seed=11)
    assert first == bootstrap_auc_ci(y, p, n_boot=300, seed=11)
    assert first != bootstrap_auc_ci(y, p, n_boot=300, seed=12)
    aucs = per_class_auc(y, p)
    assert first["mean_auc_ci_low"] <= aucs.mean() <= first["mean_auc_ci_high"]
    for auc, (low, high) in zip(aucs, first["per_class_ci"], strict=True):
        assert low <= auc <= high < 1.0
    assert first["n_boot"] == 300


def test_bootstrap_zero_resamples_gives_no_interval() -> None:
    ci = bootstrap_auc_ci(Y_TRUE, Y_PROB, n_boot=0)
    assert ci == {"mean_auc_ci_low": None, "mean_auc_ci_high": None, "per_class_ci": [None, None], "n_boot": 0,
                  "unit": "image", "n_units": 6}


@pytest.mark.parametrize(
    ("y_true", "y_prob", "names", "match"),
    [
        (Y_TRUE, Y_PROB[:, :1], NAMES, r"expected \(6, 2\), found \(6, 1\)"),
        (Y_TRUE, Y_PROB, ["A", "B", "C"], "expected 2 class names .* found 3"),
        (Y_TRUE[:, 0], Y_PROB[:, 0], ["A"], r"2-D .* found shape \(6,\)"),
        (Y_TRUE, np.where(np.eye(6, 2) == 1, NAN, Y_PROB), NAMES, "found nan at row 0, column 0"),
        (Y_TRUE, np.where(np.eye(6, 2, k=1) == 1, 1.2, Y_PROB), NAMES, "in \\[0, 1\\]; found 1.2 at row 0, column 1"),
        (np.where(Y_TRUE == 1, 2, Y_TRUE), Y_PROB, NAMES, "0, 1 or NaN .* found 2.0"),
    ],
    ids=["shape-mismatch", "class-name-count", "one-dimensional", "nan-probability", "prob-above-one", "label-two"],
)
def test_bad_input_raises_data_error(y_true: np.ndarray, y_prob: np.ndarray, names: list[str], match: str) -> None:
    with pytest.raises(DataError, match=match):
        compute_classification_metrics(y_true, y_prob, names, n_boot=0)


def test_wrong_threshold_count_raises_data_error() -> None:
    with pytest.raises(DataError, match=r"expected 2 thresholds .* found \[0.5\]"):
        compute_classification_metrics(Y_TRUE, Y_PROB, NAMES, thresholds=[0.5], n_boot=0)
