"""Semantic segmentation metrics over integer label maps with an ignored label: Dice, IoU, HD95, confusion matrix.

Label convention (BCSS histology bundles): a target label map holds ``ignore_index`` (0 by default: outside the
annotated region) or a class label ``1..K``; ``class_names[c - 1]`` names label ``c``. The network outputs ``K``
channels, channel ``j`` scoring label ``j + 1`` (there is no channel for the ignored label), so a prediction is
``argmax + 1`` (:func:`labels_from_scores`) and never holds the ignored value. Ignored pixels count nowhere.

Dice and IoU are computed from the confusion matrix summed over every pixel of every image (not averaged per
image). HD95 (95th percentile symmetric Hausdorff distance, MONAI's ``compute_hausdorff_distance``, in pixels)
is computed per image and class, then averaged over the images where the class is present in both the
prediction and the truth. A metric that is undefined (class absent from both truth and prediction) is ``None``
in the output and left out of the means.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_hausdorff_distance
from numpy.typing import ArrayLike

from common.errors import ConfigError, DataError
from common.metrics.formatting import finite_or_none as _finite_or_none
from common.metrics.formatting import mean_or_none as _mean_or_none

__all__ = [
    "labels_from_scores",
    "confusion_matrix",
    "dice_iou_from_confusion",
    "hd95",
    "hd95_per_class",
    "segmentation_metrics_from_confusion",
    "compute_segmentation_metrics",
]


def _as_int_array(value: ArrayLike | torch.Tensor, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise DataError(f"{what} must hold integer labels; found non-integer values such as {array.ravel()[0]}")
    elif array.dtype.kind not in "iub":
        raise DataError(f"{what} must be an integer label map; found dtype {array.dtype}")
    return array.astype(np.int64)


def _check_ignore_index(num_classes: int, ignore_index: int) -> None:
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1; found {num_classes}")
    if 1 <= ignore_index <= num_classes:
        raise ConfigError(f"ignore_index must not be a class label 1..{num_classes}; found {ignore_index}")


def labels_from_scores(scores: ArrayLike | torch.Tensor, num_classes: int) -> np.ndarray:
    """Turn ``(K, *spatial)`` class scores (logits or probabilities) into labels ``1..K`` (``argmax + 1``).

    Example:
        >>> labels_from_scores(np.array([[[0.9, 0.2]], [[0.1, 0.8]]]), 2).tolist()
        [[1, 2]]
    """
    array = scores.detach().float().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    if array.ndim < 2 or array.shape[0] != num_classes:
        raise DataError(
            f"expected class scores of shape ({num_classes}, *spatial), one channel per class 1..{num_classes}; "
            f"found shape {array.shape}"
        )
    return np.argmax(array, axis=0).astype(np.int64) + 1


def confusion_matrix(
    pred: ArrayLike | torch.Tensor, target: ArrayLike | torch.Tensor, num_classes: int, ignore_index: int = 0
) -> np.ndarray:
    """Pixel confusion matrix ``(K, K)``: row ``i`` = truth label ``i + 1``, column ``j`` = predicted ``j + 1``.

    Pixels whose target is ``ignore_index`` are left out (the prediction there is not looked at).

    Raises:
        DataError: shapes differ, or a counted pixel holds a label outside ``1..K``.

    Example:
        >>> confusion_matrix([[1, 2, 2]], [[1, 2, 0]], num_classes=2).tolist()
        [[1, 0], [0, 1]]
    """
    _check_ignore_index(num_classes, ignore_index)
    p, t = _as_int_array(pred, "pred"), _as_int_array(target, "target")
    if p.shape != t.shape:
        raise DataError(f"pred and target must have the same shape; found {p.shape} and {t.shape}")
    keep = t != ignore_index
    p, t = p[keep], t[keep]
    for name, values in (("target", t), ("pred", p)):
        bad = (values < 1) | (values > num_classes)
        if bad.any():
            raise DataError(
                f"{name} labels must be 1..{num_classes} (or {ignore_index} = ignored in the target); "
                f"found {int(values[bad][0])}"
            )
    counts = np.bincount((t - 1) * num_classes + (p - 1), minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def dice_iou_from_confusion(cm: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Per-class Dice ``2TP / (2TP + FP + FN)`` and IoU ``TP / (TP + FP + FN)``; NaN where TP + FP + FN = 0.

    Example:
        >>> dice, iou = dice_iou_from_confusion([[3, 1], [0, 0]])
        >>> dice.tolist(), iou.tolist()
        ([0.8571428571428571, 0.0], [0.75, 0.0])
    """
    counts = np.asarray(cm, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise DataError(f"confusion matrix must be square (K, K); found shape {counts.shape}")
    tp = np.diag(counts)
    fp, fn = counts.sum(axis=0) - tp, counts.sum(axis=1) - tp
    union = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(union > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        iou = np.where(union > 0, tp / union, np.nan)
    return dice, iou


def hd95(
    pred: ArrayLike | torch.Tensor,
    target: ArrayLike | torch.Tensor,
    class_index: int,
    ignore_mask: ArrayLike | torch.Tensor | None = None,
) -> float | None:
    """95th percentile symmetric Hausdorff distance (pixels) of label ``class_index`` in one image.

    Pixels where ``ignore_mask`` is true are set to background in both masks first.

    Returns:
        The distance, or None when the label is absent from the prediction or the truth (after masking).

    Example:
        >>> round(hd95([[1, 0, 0, 1]], [[1, 0, 0, 0]], class_index=1), 4)  # pred->truth distances 0 and 3
        2.85
    """
    p, t = _as_int_array(pred, "pred") == class_index, _as_int_array(target, "target") == class_index
    if p.shape != t.shape:
        raise DataError(f"pred and target must have the same shape; found {p.shape} and {t.shape}")
    if ignore_mask is not None:
        ignored = np.asarray(ignore_mask.cpu() if isinstance(ignore_mask, torch.Tensor) else ignore_mask, dtype=bool)
        if ignored.shape != p.shape:
            raise DataError(f"ignore_mask must have the label map's shape {p.shape}; found {ignored.shape}")
        p, t = p & ~ignored, t & ~ignored
    if not p.any() or not t.any():
        return None
    with warnings.catch_warnings():
        # MONAI 1.6 passes its own deprecated get_mask_edges(always_return_as_numpy=...) internally; not ours to fix.
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*")
        distance = compute_hausdorff_distance(
            torch.from_numpy(p[None, None]), torch.from_numpy(t[None, None]), include_background=True, percentile=95
        )
    return float(distance.item())


def hd95_per_class(pred: ArrayLike, target: ArrayLike, num_classes: int, ignore_index: int = 0) -> list[float | None]:
    """:func:`hd95` of every label ``1..K`` in one image, ignoring pixels whose target is ``ignore_index``."""
    t = _as_int_array(target, "target")
    ignored = t == ignore_index
    return [hd95(pred, t, c, ignored) for c in range(1, num_classes + 1)]


def segmentation_metrics_from_confusion(
    cm: ArrayLike, hd95_rows: Sequence[Sequence[float | None]], class_names: Sequence[str], ignore_index: int = 0
) -> dict[str, Any]:
    """Build the metrics dict (see :func:`compute_segmentation_metrics`) from accumulated statistics.

    Args:
        cm: summed pixel confusion matrix ``(K, K)`` (:func:`confusion_matrix`).
        hd95_rows: one list of K per-class HD95 values (None = undefined) per image.
        class_names: names of labels ``1..K``.
        ignore_index: the ignored label, recorded in the output.
    """
    counts = np.asarray(cm, dtype=np.int64)
    names = list(class_names)
    if counts.shape != (len(names), len(names)):
        raise DataError(f"confusion matrix must be ({len(names)}, {len(names)}) for {names}; found {counts.shape}")
    if not hd95_rows:
        raise DataError("no images were evaluated")
    dice, iou = dice_iou_from_confusion(counts)
    per_class = []
    for c, name in enumerate(names):
        distances = [row[c] for row in hd95_rows if row[c] is not None]
        per_class.append({
            "name": name,
            "label": c + 1,
            "dice": _finite_or_none(dice[c]),
            "iou": _finite_or_none(iou[c]),
            "hd95": _mean_or_none(distances),
            "hd95_images": len(distances),
            "support": int(counts[c].sum()),
            "predicted": int(counts[:, c].sum()),
        })
    total = int(counts.sum())
    return {
        "class_names": names,
        "ignore_index": ignore_index,
        "n_images": len(hd95_rows),
        "n_pixels": total,
        "per_class": per_class,
        "mean_dice": _mean_or_none([e["dice"] for e in per_class]),
        "mean_iou": _mean_or_none([e["iou"] for e in per_class]),
        "mean_hd95": _mean_or_none([e["hd95"] for e in per_class]),
        "pixel_accuracy": float(np.trace(counts) / total) if total else None,
        "undefined_classes": [e["name"] for e in per_class if e["dice"] is None],
        "confusion_matrix": {"rows": "truth", "columns": "prediction", "class_names": names,
                             "counts": counts.tolist()},
    }


def compute_segmentation_metrics(
    preds: Sequence[ArrayLike], targets: Sequence[ArrayLike], class_names: Sequence[str], ignore_index: int = 0
) -> dict[str, Any]:
    """Dice, IoU, HD95 per class and their means, pixel accuracy and the confusion matrix, as a JSON-ready dict.

    Args:
        preds: predicted label maps (labels ``1..K``), one per image, any spatial shape.
        targets: the matching truth label maps (``ignore_index`` or ``1..K``).
        class_names: names of labels ``1..K``.
        ignore_index: label of pixels that count nowhere.

    Returns:
        ``per_class`` (name, label, dice, iou, hd95 (mean over images where defined), hd95_images, support =
        truth pixels, predicted pixels), ``mean_dice``, ``mean_iou``, ``mean_hd95``, ``pixel_accuracy``,
        ``confusion_matrix`` (rows = truth, columns = prediction, counts), ``undefined_classes``, ``n_images``,
        ``n_pixels`` (counted pixels), ``class_names``, ``ignore_index``. Undefined values are None.

    Example:
        >>> m = compute_segmentation_metrics([[[1, 2]]], [[[1, 0]]], ["tumor", "stroma"])
        >>> m["mean_dice"], m["undefined_classes"]  # the stroma pixel is ignored: stroma is undefined
        (1.0, ['stroma'])
    """
    if len(preds) != len(targets):
        raise DataError(f"expected one target per prediction; found {len(preds)} predictions, {len(targets)} targets")
    num_classes = len(class_names)
    _check_ignore_index(num_classes, ignore_index)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    rows = []
    for pred, target in zip(preds, targets, strict=True):
        cm += confusion_matrix(pred, target, num_classes, ignore_index)
        rows.append(hd95_per_class(pred, target, num_classes, ignore_index))
    return segmentation_metrics_from_confusion(cm, rows, class_names, ignore_index)
