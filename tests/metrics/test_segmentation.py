"""Tests of common.metrics.segmentation against hand-computed confusion counts, Dice, IoU and HD95."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric, compute_hausdorff_distance
from scipy.ndimage import binary_erosion, distance_transform_edt
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from common.errors import ConfigError, DataError
from common.metrics import (
    compute_segmentation_metrics,
    confusion_matrix,
    dice_iou_from_confusion,
    hd95,
    labels_from_scores,
)

NAMES = ["tumor", "stroma", "necrosis", "fat"]
# Image A: column 3 is outside the annotation (0). The prediction puts "fat" (4) and "necrosis" (3) only there.
TARGET_A = np.array([[1, 1, 2, 0], [3, 3, 2, 0]])
PRED_A = np.array([[1, 2, 2, 4], [3, 1, 2, 3]])
# Image B: its last pixel is ignored too.
TARGET_B = np.array([[1, 1, 0]])
PRED_B = np.array([[1, 1, 1]])
# Counted (truth, pred) pairs of A: (1,1) (1,2) (2,2) (3,3) (3,1) (2,2); of B: (1,1) (1,1).
CM_A = [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
CM = [[3, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
# TP 3, 2, 1, 0; FP (column - TP) 1, 1, 0, 0; FN (row - TP) 1, 0, 1, 0 -> fat has TP + FP + FN = 0: undefined.
DICE = [6 / 8, 4 / 5, 2 / 3, None]
IOU = [3 / 5, 2 / 3, 1 / 2, None]
# HD95 in A (every object is 1-2 pixels, so every pixel is an edge pixel; quantiles interpolate linearly):
#   tumor: pred {(0,0), (1,1)} vs truth {(0,0), (0,1)}: distances [0, 1] both ways -> 0.95.
#   stroma: pred {(0,1), (0,2), (1,2)} -> truth: [1, 0, 0] -> 0.9; truth -> pred: [0, 0] -> max 0.9.
#   necrosis: pred {(1,0)} ((1,3) is ignored) vs truth {(1,0), (1,1)}: [0] and [0, 1] -> 0.95.
# In B tumor is a perfect match (0.0); stroma and necrosis are absent there, so they average one image only.
HD95_A = [0.95, 0.9, 0.95, None]
HD95 = [(0.95 + 0.0) / 2, 0.9, 0.95, None]


def test_confusion_matrix_hand_counts() -> None:
    assert confusion_matrix(PRED_A, TARGET_A, 4).tolist() == CM_A


def test_confusion_matrix_matches_sklearn_on_counted_pixels() -> None:
    rng = np.random.default_rng(0)
    target, pred = rng.integers(0, 4, size=(16, 16)), rng.integers(1, 4, size=(16, 16))
    keep = target != 0
    expected = sk_confusion_matrix(target[keep], pred[keep], labels=[1, 2, 3])
    np.testing.assert_array_equal(confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), 3), expected)


def test_confusion_matrix_with_another_ignore_value() -> None:
    target = np.array([[255, 1], [2, 2]])
    assert confusion_matrix([[0, 1], [2, 1]], target, 2, ignore_index=255).tolist() == [[1, 0], [1, 1]]


def test_dice_iou_from_confusion_hand_values() -> None:
    dice, iou = dice_iou_from_confusion(CM)
    np.testing.assert_allclose(dice[:3], DICE[:3], rtol=1e-12)
    np.testing.assert_allclose(iou[:3], IOU[:3], rtol=1e-12)
    assert np.isnan(dice[3]) and np.isnan(iou[3])


@pytest.mark.parametrize("class_index", [1, 2, 3, 4], ids=NAMES)
def test_hd95_hand_values_with_ignored_pixels(class_index: int) -> None:
    value = hd95(PRED_A, TARGET_A, class_index, ignore_mask=TARGET_A == 0)
    expected = HD95_A[class_index - 1]
    assert value == (None if expected is None else pytest.approx(expected, abs=1e-6))


def test_hd95_counts_ignored_pixels_without_a_mask() -> None:
    # Without the mask the necrosis prediction at (1, 3) counts: pred -> truth distances [0, 2] -> 1.9 (was 0.95).
    assert hd95(PRED_A, TARGET_A, 3) == pytest.approx(1.9, abs=1e-6)


def test_hd95_single_pixels_three_apart() -> None:
    assert hd95([[1, 2, 2, 2]], [[2, 2, 2, 1]], class_index=1) == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("pred", "target"), [([[2, 2]], [[1, 2]]), ([[1, 2]], [[2, 2]])], ids=["absent-in-pred", "absent-in-truth"]
)
def test_hd95_is_inf_when_class_missed_like_monai_hausdorff(pred: list, target: list) -> None:
    # MONAI's plain Hausdorff distance (no percentile) of an empty mask against a non-empty one is inf.
    p, t = (torch.tensor(np.asarray(a) == 1)[None, None] for a in (pred, target))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isinf(float(compute_hausdorff_distance(p, t, include_background=True)))
    assert hd95(pred, target, 1, ignore_mask=np.asarray(target) == 0) == math.inf


def test_hd95_none_when_class_absent_from_both_after_masking() -> None:
    assert hd95([[1, 2]], [[0, 2]], 1, ignore_mask=np.array([[True, False]])) is None


def _scipy_hd95(pred: np.ndarray, truth: np.ndarray) -> float | None:
    """Independent HD95: edges = mask minus its erosion; max of the two directed 95th percentiles (scipy EDT)."""
    if not pred.any() and not truth.any():
        return None
    if not pred.any() or not truth.any():
        return math.inf
    edges_p, edges_t = pred ^ binary_erosion(pred), truth ^ binary_erosion(truth)
    to_truth = distance_transform_edt(~edges_t)[edges_p]
    to_pred = distance_transform_edt(~edges_p)[edges_t]
    return float(max(np.percentile(to_truth, 95), np.percentile(to_pred, 95)))


# Three images with misses: in C stroma (2) is in the truth only; in D stroma is predicted only; E is random blobs.
TARGET_C, PRED_C = np.array([[1, 1, 2], [1, 2, 2], [0, 1, 1]]), np.array([[1, 1, 1], [1, 1, 1], [2, 1, 1]])
TARGET_D, PRED_D = np.array([[1, 1, 1, 1]]), np.array([[1, 1, 2, 1]])
_RNG = np.random.default_rng(3)
TARGET_E = np.kron(_RNG.integers(0, 3, size=(4, 5)), np.ones((3, 3), dtype=np.int64))
PRED_E = np.kron(_RNG.integers(1, 3, size=(4, 5)), np.ones((3, 3), dtype=np.int64))
MISSED = ([PRED_C, PRED_D, PRED_E], [TARGET_C, TARGET_D, TARGET_E])


def _independent_hd95(hd95_missed: str) -> tuple[list[float | None], list[int]]:
    """Per class: HD95 mean by the policy, and the number of missed cases, from :func:`_scipy_hd95`."""
    means, missed = [], []
    for label in (1, 2):
        scored, n_missed = [], 0
        for pred, target in zip(*MISSED, strict=True):
            keep = target != 0
            value = _scipy_hd95((pred == label) & keep, (target == label) & keep)
            if value is None:
                continue
            if math.isinf(value):
                n_missed += 1
                if hd95_missed == "exclude":
                    continue
                value = math.hypot(*target.shape)
            scored.append(value)
        means.append(float(np.mean(scored)) if scored else None)
        missed.append(n_missed)
    return means, missed


def test_hd95_matches_scipy_on_blobs() -> None:
    for label in (1, 2):
        keep = TARGET_E != 0
        expected = _scipy_hd95((PRED_E == label) & keep, (TARGET_E == label) & keep)
        assert hd95(PRED_E, TARGET_E, label, ignore_mask=~keep) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("hd95_missed", ["exclude", "diagonal"], ids=["exclude", "diagonal"])
def test_missed_classes_are_counted_not_dropped(hd95_missed: str) -> None:
    metrics = compute_segmentation_metrics(*MISSED, ["tumor", "stroma"], hd95_missed=hd95_missed)
    json.dumps(metrics, allow_nan=False)
    means, missed = _independent_hd95(hd95_missed)
    assert [e["hd95_missed_images"] for e in metrics["per_class"]] == missed
    assert missed[1] == 2  # C (truth only) and D (prediction only); the old code dropped both silently
    assert metrics["hd95_missed_images"] == sum(missed) and metrics["hd95_missed"] == hd95_missed
    for entry, expected in zip(metrics["per_class"], means, strict=True):
        assert entry["hd95"] == pytest.approx(expected, abs=1e-6)
    n_stroma = 3 if hd95_missed == "diagonal" else 1
    assert metrics["per_class"][1]["hd95_images"] == n_stroma
    assert metrics["mean_hd95"] == pytest.approx(np.mean(means), abs=1e-6)


def test_diagonal_penalty_hand_value() -> None:
    # Stroma: missed in C (3x3: diagonal sqrt(18)) and in D (1x4: sqrt(17)); absent from both only nowhere.
    metrics = compute_segmentation_metrics(MISSED[0][:2], MISSED[1][:2], ["tumor", "stroma"], hd95_missed="diagonal")
    assert metrics["per_class"][1]["hd95"] == pytest.approx((math.sqrt(18) + math.sqrt(17)) / 2)


def _onehot(labels: np.ndarray, keep: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack([(labels == c) & keep for c in (1, 2)])[None].astype(np.float32))


def test_dice_per_image_matches_monai_dice_metric() -> None:
    per_class = DiceMetric(include_background=True, reduction="mean_batch", ignore_empty=True)
    overall = DiceMetric(include_background=True, reduction="mean", ignore_empty=True)
    for pred, target in zip(*MISSED, strict=True):
        keep = target != 0
        for metric in (per_class, overall):
            metric(_onehot(pred, keep), _onehot(target, keep))
    metrics = compute_segmentation_metrics(*MISSED, ["tumor", "stroma"])
    expected = per_class.aggregate().tolist()
    assert [e["dice_per_image"] for e in metrics["per_class"]] == pytest.approx(expected, abs=1e-6)
    assert metrics["mean_dice_per_image"] == pytest.approx(float(overall.aggregate()), abs=1e-6)
    assert [e["dice_images"] for e in metrics["per_class"]] == [3, int((TARGET_E == 2).any()) + 1]
    assert metrics["mean_dice_per_image"] != pytest.approx(metrics["mean_dice"], abs=1e-3)


def test_unknown_hd95_policy_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown hd95_missed 'penalty'; choose from: exclude, diagonal"):
        compute_segmentation_metrics(*MISSED, ["tumor", "stroma"], hd95_missed="penalty")


def test_compute_segmentation_metrics_hand_values() -> None:
    metrics = compute_segmentation_metrics([PRED_A, torch.from_numpy(PRED_B)], [TARGET_A, TARGET_B], NAMES)
    json.dumps(metrics, allow_nan=False)
    assert metrics["confusion_matrix"] == {"rows": "truth", "columns": "prediction", "class_names": NAMES,
                                           "counts": CM}
    assert [e["support"] for e in metrics["per_class"]] == [4, 2, 2, 0]
    assert [e["predicted"] for e in metrics["per_class"]] == [4, 3, 1, 0]
    assert [e["hd95_images"] for e in metrics["per_class"]] == [2, 1, 1, 0]
    assert [e["hd95_missed_images"] for e in metrics["per_class"]] == [0, 0, 0, 0]
    # Per image (MONAI ignore_empty): tumor A 2/4, B 1; stroma A 4/5 (B has no stroma truth); necrosis A 2/3.
    expected_per_image = [(2 / 4 + 1) / 2, 4 / 5, 2 / 3, None]
    for entry, value in zip(metrics["per_class"], expected_per_image, strict=True):
        assert entry["dice_per_image"] == (None if value is None else pytest.approx(value))
    assert metrics["mean_dice_per_image"] == pytest.approx(np.mean([np.mean([2 / 4, 4 / 5, 2 / 3]), 1]))
    for entry, dice, iou, distance in zip(metrics["per_class"], DICE, IOU, HD95, strict=True):
        for key, value in (("dice", dice), ("iou", iou), ("hd95", distance)):
            assert entry[key] == (None if value is None else pytest.approx(value, abs=1e-6)), (entry["name"], key)
    assert metrics["mean_dice"] == pytest.approx(np.mean(DICE[:3]))
    assert metrics["mean_iou"] == pytest.approx(np.mean(IOU[:3]))
    assert metrics["mean_hd95"] == pytest.approx(np.mean(HD95[:3]), abs=1e-6)
    assert metrics["pixel_accuracy"] == 6 / 8
    assert metrics["undefined_classes"] == ["fat"]
    assert (metrics["n_images"], metrics["n_pixels"], metrics["ignore_index"]) == (2, 8, 0)


def test_all_pixels_ignored_gives_no_values() -> None:
    metrics = compute_segmentation_metrics([[[1, 2]]], [[[0, 0]]], ["a", "b"])
    assert metrics["mean_dice"] is None and metrics["pixel_accuracy"] is None and metrics["mean_hd95"] is None
    assert metrics["undefined_classes"] == ["a", "b"]


def test_labels_from_scores_is_argmax_plus_one() -> None:
    scores = torch.tensor([[[0.1, 0.7]], [[0.6, 0.2]], [[0.3, 0.1]]])
    assert labels_from_scores(scores, 3).tolist() == [[2, 1]]


@pytest.mark.parametrize(
    ("pred", "target", "match"),
    [
        ([[1, 2, 3]], [[1, 2]], r"same shape; found \(1, 3\) and \(1, 2\)"),
        ([[0, 1]], [[1, 1]], "pred labels must be 1..2 .* found 0"),
        ([[1, 1]], [[1, 5]], "target labels must be 1..2 .* found 5"),
        ([[1.5, 1]], [[1, 1]], "pred must hold integer labels"),
    ],
    ids=["shape", "pred-zero", "target-out-of-range", "fractional"],
)
def test_confusion_matrix_rejects_bad_maps(pred: list, target: list, match: str) -> None:
    with pytest.raises(DataError, match=match):
        confusion_matrix(pred, target, 2)


def test_ignore_index_may_not_be_a_class() -> None:
    with pytest.raises(ConfigError, match=r"ignore_index must not be a class label 1..2; found 2"):
        confusion_matrix([[1]], [[1]], 2, ignore_index=2)


def test_labels_from_scores_rejects_wrong_channel_count() -> None:
    with pytest.raises(DataError, match=r"shape \(3, \*spatial\).* found shape \(2, 1, 2\)"):
        labels_from_scores(np.zeros((2, 1, 2)), 3)


def test_metrics_refuse_mismatched_lists() -> None:
    with pytest.raises(DataError, match="2 predictions, 1 targets"):
        compute_segmentation_metrics([PRED_A, PRED_A], [TARGET_A], NAMES)
