"""Semantic segmentation metrics over integer label maps with an ignored label: Dice, IoU, HD95, confusion matrix.

Label convention (BCSS histology bundles): a target label map holds ``ignore_index`` (0 by default: outside the
annotated region) or a class label ``1..K``; ``class_names[c - 1]`` names label ``c``. The network outputs ``K``
channels, channel ``j`` scoring label ``j + 1`` (there is no channel for the ignored label), so a prediction is
``argmax + 1`` (:func:`labels_from_scores`) and never holds the ignored value. Ignored pixels count nowhere.

Dice and IoU are computed from the confusion matrix summed over every pixel of every image (pooled, not averaged
per image). Beside it, ``dice_per_image`` / ``mean_dice_per_image`` follow MONAI's ``DiceMetric`` defaults
(``include_background=True, ignore_empty=True``): Dice per (image, class) where the truth holds the class, then
averaged (per class over images: ``reduction="mean_batch"``; overall ``reduction="mean"``: each image's mean over
its defined classes, then the mean over images).

HD95 (95th percentile symmetric Hausdorff distance, MONAI's ``compute_hausdorff_distance``, in pixels) is computed
per image and class. A class in the truth but not in the prediction, or the reverse, is a *missed* case: its
distance is ``inf``, MONAI's convention (``monai.metrics.utils.get_surface_distance`` gives ``inf`` distances for an
empty mask, so ``compute_hausdorff_distance`` returns ``inf`` without a percentile; with ``percentile=95`` MONAI
1.6.1's ``torch.quantile`` turns those into NaN, which ``HausdorffDistanceMetric``'s not-NaN mean then silently
drops). Missed cases are never dropped silently: ``hd95_missed="exclude"`` (default) averages the finite values and
reports the count of missed cases beside the mean; ``hd95_missed="diagonal"`` scores each missed case as the image
diagonal ``sqrt(sum(shape**2))`` in pixels (BraTS-style penalty) and averages everything. A class absent from both
truth and prediction in an image is undefined there (None) and left out. A metric that is undefined for every image
is ``None`` in the output and left out of the means.
"""

from __future__ import annotations

import math
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
    "dice_per_image_from_confusion",
    "image_diagonal",
    "HD95_MISSED_POLICIES",
    "hd95",
    "hd95_per_class",
    "segmentation_metrics_from_confusion",
    "compute_segmentation_metrics",
]


HD95_MISSED_POLICIES = ("exclude", "diagonal")


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


def dice_per_image_from_confusion(cm: ArrayLike) -> list[float | None]:
    """Per-class Dice of one image from its confusion matrix, None where the truth lacks the class.

    This is MONAI's ``compute_dice(..., include_background=True, ignore_empty=True)`` for one image: a class absent
    from the truth is NaN there (left out of MONAI's means) even when it is predicted.

    Example:
        >>> dice_per_image_from_confusion([[3, 1], [0, 0]])
        [0.8571428571428571, None]
    """
    counts = np.asarray(cm, dtype=np.float64)
    dice, _ = dice_iou_from_confusion(counts)
    return [float(d) if counts[c].sum() > 0 else None for c, d in enumerate(dice)]


def image_diagonal(shape: Sequence[int]) -> float:
    """Length of the image diagonal ``sqrt(sum(n ** 2))`` in pixels: the HD95 penalty of ``hd95_missed="diagonal"``.

    Example:
        >>> image_diagonal((3, 4))
        5.0
    """
    return float(math.sqrt(sum(int(n) ** 2 for n in shape)))


def hd95(
    pred: ArrayLike | torch.Tensor,
    target: ArrayLike | torch.Tensor,
    class_index: int,
    ignore_mask: ArrayLike | torch.Tensor | None = None,
) -> float | None:
    """95th percentile symmetric Hausdorff distance (pixels) of label ``class_index`` in one image.

    Pixels where ``ignore_mask`` is true are set to background in both masks first.

    Returns:
        The distance; ``math.inf`` when the label is in exactly one of prediction and truth (a missed case, MONAI's
        convention); None when it is in neither (after masking).

    Example:
        >>> round(hd95([[1, 0, 0, 1]], [[1, 0, 0, 0]], class_index=1), 4)  # pred->truth distances 0 and 3
        2.85
        >>> hd95([[2, 2]], [[1, 2]], class_index=1)  # in the truth only
        inf
    """
    p, t = _as_int_array(pred, "pred") == class_index, _as_int_array(target, "target") == class_index
    if p.shape != t.shape:
        raise DataError(f"pred and target must have the same shape; found {p.shape} and {t.shape}")
    if ignore_mask is not None:
        ignored = np.asarray(ignore_mask.cpu() if isinstance(ignore_mask, torch.Tensor) else ignore_mask, dtype=bool)
        if ignored.shape != p.shape:
            raise DataError(f"ignore_mask must have the label map's shape {p.shape}; found {ignored.shape}")
        p, t = p & ~ignored, t & ~ignored
    if not p.any() and not t.any():
        return None
    if not p.any() or not t.any():
        # MONAI's surface distances are inf here; its 95th percentile of inf values is NaN, so answer directly.
        return math.inf
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


def _check_hd95_missed(hd95_missed: str) -> None:
    if hd95_missed not in HD95_MISSED_POLICIES:
        raise ConfigError(f"unknown hd95_missed {hd95_missed!r}; choose from: {', '.join(HD95_MISSED_POLICIES)}")


def _hd95_summary(values: list[float], diagonals: list[float], hd95_missed: str) -> tuple[float | None, int, int]:
    """(mean HD95, images in the mean, missed images) of one class; ``values`` excludes undefined images."""
    missed = sum(1 for v in values if math.isinf(v))
    if hd95_missed == "diagonal":
        scored = [d if math.isinf(v) else v for v, d in zip(values, diagonals, strict=True)]
    else:
        scored = [v for v in values if not math.isinf(v)]
    return _mean_or_none(scored), len(scored), missed


def segmentation_metrics_from_confusion(
    cm: ArrayLike,
    hd95_rows: Sequence[Sequence[float | None]],
    class_names: Sequence[str],
    ignore_index: int = 0,
    *,
    dice_rows: Sequence[Sequence[float | None]],
    diagonals: Sequence[float],
    hd95_missed: str = "exclude",
) -> dict[str, Any]:
    """Build the metrics dict (see :func:`compute_segmentation_metrics`) from accumulated statistics.

    Args:
        cm: summed pixel confusion matrix ``(K, K)`` (:func:`confusion_matrix`).
        hd95_rows: one list of K per-class HD95 values per image (None = undefined, inf = missed).
        class_names: names of labels ``1..K``.
        ignore_index: the ignored label, recorded in the output.
        dice_rows: one list of K per-class Dice values per image (:func:`dice_per_image_from_confusion`).
        diagonals: :func:`image_diagonal` of each image (the penalty of ``hd95_missed="diagonal"``).
        hd95_missed: ``"exclude"`` or ``"diagonal"``; see the module docstring.

    Raises:
        ConfigError: unknown ``hd95_missed``.
        DataError: no images, or the matrix / row counts do not fit together.
    """
    _check_hd95_missed(hd95_missed)
    counts = np.asarray(cm, dtype=np.int64)
    names = list(class_names)
    if counts.shape != (len(names), len(names)):
        raise DataError(f"confusion matrix must be ({len(names)}, {len(names)}) for {names}; found {counts.shape}")
    if not hd95_rows:
        raise DataError("no images were evaluated")
    if not len(hd95_rows) == len(dice_rows) == len(diagonals):
        raise DataError(f"expected one HD95 row, Dice row and diagonal per image; found {len(hd95_rows)}, "
                        f"{len(dice_rows)} and {len(diagonals)}")
    dice, iou = dice_iou_from_confusion(counts)
    per_class = []
    for c, name in enumerate(names):
        defined = [(row[c], d) for row, d in zip(hd95_rows, diagonals, strict=True) if row[c] is not None]
        distance, n_scored, n_missed = _hd95_summary([v for v, _ in defined], [d for _, d in defined], hd95_missed)
        image_dice = [row[c] for row in dice_rows if row[c] is not None]
        per_class.append({
            "name": name,
            "label": c + 1,
            "dice": _finite_or_none(dice[c]),
            "dice_per_image": _mean_or_none(image_dice),
            "dice_images": len(image_dice),
            "iou": _finite_or_none(iou[c]),
            "hd95": distance,
            "hd95_images": n_scored,
            "hd95_missed_images": n_missed,
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
        # MONAI's reduction="mean": average the defined classes of each image, then the images with any.
        "mean_dice_per_image": _mean_or_none([_mean_or_none(row) for row in dice_rows]),
        "mean_iou": _mean_or_none([e["iou"] for e in per_class]),
        "mean_hd95": _mean_or_none([e["hd95"] for e in per_class]),
        "hd95_missed": hd95_missed,
        "hd95_missed_images": sum(e["hd95_missed_images"] for e in per_class),
        "pixel_accuracy": float(np.trace(counts) / total) if total else None,
        "undefined_classes": [e["name"] for e in per_class if e["dice"] is None],
        "confusion_matrix": {"rows": "truth", "columns": "prediction", "class_names": names,
                             "counts": counts.tolist()},
    }


def compute_segmentation_metrics(
    preds: Sequence[ArrayLike],
    targets: Sequence[ArrayLike],
    class_names: Sequence[str],
    ignore_index: int = 0,
    hd95_missed: str = "exclude",
) -> dict[str, Any]:
    """Dice, IoU, HD95 per class and their means, pixel accuracy and the confusion matrix, as a JSON-ready dict.

    Args:
        preds: predicted label maps (labels ``1..K``), one per image, any spatial shape.
        targets: the matching truth label maps (``ignore_index`` or ``1..K``).
        class_names: names of labels ``1..K``.
        ignore_index: label of pixels that count nowhere.
        hd95_missed: ``"exclude"`` (mean over finite HD95, missed cases counted) or ``"diagonal"`` (a missed case
            scores the image diagonal); see the module docstring.

    Returns:
        ``per_class`` (name, label, dice (pooled), dice_per_image (MONAI ``DiceMetric`` mean over images whose truth
        holds the class), dice_images, iou, hd95 (mean as ``hd95_missed`` says), hd95_images (images in that mean),
        hd95_missed_images (images where the class is in only one of truth and prediction), support = truth pixels,
        predicted pixels), ``mean_dice`` (pooled, over classes), ``mean_dice_per_image`` (MONAI ``DiceMetric``
        ``reduction="mean"``: per image over its defined classes, then over images), ``mean_iou``, ``mean_hd95``,
        ``hd95_missed`` (the policy), ``hd95_missed_images`` (total), ``pixel_accuracy``, ``confusion_matrix``
        (rows = truth, columns = prediction, counts), ``undefined_classes``, ``n_images``, ``n_pixels`` (counted
        pixels), ``class_names``, ``ignore_index``.
        Undefined values are None.

    Example:
        >>> m = compute_segmentation_metrics([[[1, 2]]], [[[1, 0]]], ["tumor", "stroma"])
        >>> m["mean_dice"], m["undefined_classes"]  # the stroma pixel is ignored: stroma is undefined
        (1.0, ['stroma'])
    """
    if len(preds) != len(targets):
        raise DataError(f"expected one target per prediction; found {len(preds)} predictions, {len(targets)} targets")
    num_classes = len(class_names)
    _check_ignore_index(num_classes, ignore_index)
    _check_hd95_missed(hd95_missed)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    hd95_rows, dice_rows, diagonals = [], [], []
    for pred, target in zip(preds, targets, strict=True):
        image_cm = confusion_matrix(pred, target, num_classes, ignore_index)
        cm += image_cm
        dice_rows.append(dice_per_image_from_confusion(image_cm))
        hd95_rows.append(hd95_per_class(pred, target, num_classes, ignore_index))
        diagonals.append(image_diagonal(np.shape(target)))
    return segmentation_metrics_from_confusion(cm, hd95_rows, class_names, ignore_index, dice_rows=dice_rows,
                                               diagonals=diagonals, hd95_missed=hd95_missed)
