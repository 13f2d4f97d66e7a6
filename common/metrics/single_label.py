"""Single-label (binary or multi-class) classification metrics, computed with scikit-learn, with bootstrap intervals.

Conventions: ``y_label`` holds each image's class index ``(n_images,)``; ``y_prob`` the probabilities of every
class ``(n_images, n_classes)`` (softmax, or ``[1 - p, p]`` for a one-logit binary head, see
:mod:`common.transforms.single_label`). The predicted class is the arg-max, except for two classes, where it is
class 1 when ``p1 >= 0.5`` (the rule ``sklearn.metrics.roc_curve`` uses for thresholds; arg-max would give class 0
at exactly 0.5).

AUC is one-vs-rest per class (class ``c`` against all others, scored by ``y_prob[:, c]``); the macro AUC is the mean
over the classes with both positive and negative images (equal to ``roc_auc_score(..., multi_class="ovr",
average="macro")`` when every class is present), and for two classes it is the AUC of the positive class
(``class_names[1]``). Intervals are percentile bootstrap intervals resampling patients when every image has a
patient id (a cluster bootstrap, :mod:`common.metrics.bootstrap`), images otherwise.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from common.errors import ConfigError, DataError
from common.metrics.bootstrap import resample_counts, resampling_unit
from common.metrics.classification import rank_auc
from common.metrics.formatting import finite_or_none

__all__ = ["check_single_label", "one_vs_rest_auc", "predicted_classes", "bootstrap_single_label",
           "compute_single_label_metrics"]  # fmt: skip

_BOOT_BLOCK_CELLS = 4_000_000


def check_single_label(y_label: ArrayLike, y_prob: ArrayLike,
                       class_names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(y_label as int (n,), y_prob as float (n, C))``, or a DataError naming what is wrong.

    Example:
        >>> check_single_label([0, 2], [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])[0].tolist()
        [0, 2]
    """
    probs = np.asarray(y_prob, dtype=float)
    raw = np.asarray(y_label, dtype=float).reshape(-1)
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] < 2:
        raise DataError(f"y_prob must be (n_images >= 1, n_classes >= 2) probabilities; found shape {probs.shape}")
    if raw.shape[0] != probs.shape[0]:
        raise DataError(f"{raw.shape[0]} labels for {probs.shape[0]} predictions; expected one class index per image")
    if class_names is not None and len(class_names) != probs.shape[1]:
        raise DataError(f"expected {probs.shape[1]} class names (one per probability column), found "
                        f"{len(class_names)}: {list(class_names)}")
    bad = ~np.isfinite(probs) | (probs < 0) | (probs > 1)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"y_prob must hold probabilities in [0, 1]; found {probs[row, col]} at row {row}, column {col}")
    bad_label = ~np.isfinite(raw) | (raw != np.round(raw)) | (raw < 0) | (raw >= probs.shape[1])
    if bad_label.any():
        row = int(np.argmax(bad_label))
        raise DataError(f"y_label must be class indices in [0, {probs.shape[1] - 1}]; found {raw[row]} at row {row}")
    return raw.astype(int), probs


def predicted_classes(y_prob: ArrayLike) -> np.ndarray:
    """The predicted class of each row: arg-max, or for two classes ``p1 >= 0.5``.

    Example:
        >>> predicted_classes([[0.5, 0.5], [0.6, 0.4]]).tolist(), predicted_classes([[0.2, 0.3, 0.5]]).tolist()
        ([1, 0], [2])
    """
    probs = np.asarray(y_prob, dtype=float)
    if probs.shape[1] == 2:
        return (probs[:, 1] >= 0.5).astype(int)
    return np.argmax(probs, axis=1)


def one_vs_rest_auc(y_label: ArrayLike, y_prob: ArrayLike) -> np.ndarray:
    """ROC AUC of each class against the rest (``sklearn.metrics.roc_auc_score``); NaN for a class absent (or alone).

    Example:
        >>> one_vs_rest_auc([0, 1, 2, 2], [[.8, .1, .1], [.1, .8, .1], [.2, .2, .6], [.5, .1, .4]]).tolist()
        [1.0, 1.0, 1.0]
    """
    labels, probs = check_single_label(y_label, y_prob)
    aucs = np.full(probs.shape[1], np.nan)
    for c in range(probs.shape[1]):
        positive = labels == c
        if 0 < positive.sum() < labels.size:
            aucs[c] = roc_auc_score(positive, probs[:, c])
    return aucs


def _macro_auc(aucs: np.ndarray) -> np.ndarray:
    """The key number of per-class AUCs ``(..., C)``: AUC of class 1 for two classes, else the mean over the defined
    classes (NaN where none is defined)."""
    if aucs.shape[-1] == 2:
        return aucs[..., 1]
    defined = ~np.isnan(aucs)
    count = defined.sum(axis=-1)
    total = np.where(defined, aucs, 0.0).sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _interval(values: np.ndarray, alpha: float) -> list[float] | None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return [float(low), float(high)]


def bootstrap_single_label(y_label: ArrayLike, y_prob: ArrayLike, n_boot: int = 1000, seed: int = 0,
                           alpha: float = 0.05, groups: Sequence[object] | None = None) -> dict[str, Any]:  # fmt: skip
    """Percentile bootstrap intervals of the macro AUC, each class's AUC, accuracy and balanced accuracy.

    A resample draws patients (``groups``: one id per image) or images with replacement
    (``numpy.random.default_rng(seed)``) and every statistic is recomputed with the draw counts as image weights
    (:func:`common.metrics.classification.rank_auc` for AUC; balanced accuracy averages the recall of the classes
    present in the resample, as scikit-learn does).

    Returns:
        ``{"macro_auc", "per_class_auc", "accuracy", "balanced_accuracy"}`` intervals (``[low, high]`` or
        ``None`` where no resample defines one), plus ``unit`` (patient or image), ``n_units``, ``n_resamples``.

    Example:
        >>> ci = bootstrap_single_label([0, 1, 0, 1], [[.9, .1], [.2, .8], [.6, .4], [.4, .6]], n_boot=20)
        >>> ci["unit"], ci["n_resamples"], len(ci["per_class_auc"])
        ('image', 20, 2)
    """
    labels, probs = check_single_label(y_label, y_prob)
    if n_boot < 0:
        raise ConfigError(f"n_boot must be >= 0; found {n_boot}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1); found {alpha}")
    n_images, n_classes = probs.shape
    codes, n_units = resampling_unit(groups, n_images)
    rng = np.random.default_rng(seed)
    correct = (predicted_classes(probs) == labels).astype(float)
    onehot = np.eye(n_classes)[labels]
    aucs = np.full((n_boot, n_classes), np.nan)
    accuracy, balanced = np.full(n_boot, np.nan), np.full(n_boot, np.nan)
    block = max(1, _BOOT_BLOCK_CELLS // n_images)
    for start in range(0, n_boot, block):
        rows = slice(start, min(n_boot, start + block))
        counts = resample_counts(rng, rows.stop - rows.start, n_images, codes, n_units).astype(float)
        for c in range(n_classes):
            aucs[rows, c] = rank_auc(labels == c, probs[:, c], counts)
        accuracy[rows] = counts @ correct / counts.sum(axis=1)
        support = counts @ onehot
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = (counts @ (onehot * correct[:, None])) / support
            balanced[rows] = np.nanmean(np.where(support > 0, recall, np.nan), axis=1)
    return {
        "macro_auc": _interval(_macro_auc(aucs), alpha),
        "per_class_auc": [_interval(aucs[:, c], alpha) for c in range(n_classes)],
        "accuracy": _interval(accuracy, alpha),
        "balanced_accuracy": _interval(balanced, alpha),
        "unit": "image" if codes is None else "patient",
        "n_units": int(n_units),
        "n_resamples": int(n_boot),
    }


def compute_single_label_metrics(y_label: ArrayLike, y_prob: ArrayLike, class_names: Sequence[str],
                                 n_boot: int = 1000, seed: int = 0,
                                 patient_ids: Sequence[object] | None = None) -> dict[str, Any]:  # fmt: skip
    """Every evaluation number of a single-label classifier, JSON-serialisable (``None``, never NaN).

    Args:
        y_label: class index per image ``(n_images,)``.
        y_prob: probabilities ``(n_images, n_classes)``.
        class_names: one per column; for two classes ``class_names[1]`` is the positive class.
        n_boot: bootstrap resamples for the intervals (0: none).
        seed: bootstrap seed.
        patient_ids: one per image: intervals resample patients; ``None`` resamples images.

    Returns:
        ``task`` (binary / multiclass), ``n_images``, ``class_names``, ``positive_class`` (binary, else ``None``),
        ``macro_auc`` + ``macro_auc_ci`` (the key metric), ``accuracy`` (+ ``_ci``), ``balanced_accuracy`` (+ ``_ci``),
        ``macro`` (precision, recall, f1), ``per_class`` (name, support, precision, recall, f1, auc, auc_ci),
        ``confusion_matrix`` (rows: true class, columns: predicted, counts), ``undefined_auc_classes``,
        ``bootstrap`` (unit, n_units, n_resamples).

    Raises:
        DataError: shapes or values are wrong (see :func:`check_single_label`).

    Example:
        >>> m = compute_single_label_metrics([0, 1, 1], [[.8, .2], [.3, .7], [.6, .4]], ["benign", "malignant"], 10)
        >>> m["task"], m["macro_auc"], m["accuracy"]
        ('binary', 1.0, 0.6666666666666666)
    """
    labels, probs = check_single_label(y_label, y_prob, class_names)
    n_classes = probs.shape[1]
    classes = list(range(n_classes))
    predicted = predicted_classes(probs)
    aucs = one_vs_rest_auc(labels, probs)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=classes,
                                                                     zero_division=0)  # fmt: skip
    macro = precision_recall_fscore_support(labels, predicted, labels=classes, average="macro", zero_division=0)
    with warnings.catch_warnings():  # a class absent from y_true: sklearn warns, and averages the present ones
        warnings.simplefilter("ignore", UserWarning)
        balanced = balanced_accuracy_score(labels, predicted)
    boot = bootstrap_single_label(labels, probs, n_boot=n_boot, seed=seed, groups=patient_ids)
    per_class = [{"name": str(name), "support": int(support[c]), "precision": float(precision[c]),
                  "recall": float(recall[c]), "f1": float(f1[c]), "auc": finite_or_none(aucs[c]),
                  "auc_ci": boot["per_class_auc"][c]} for c, name in enumerate(class_names)]  # fmt: skip
    return {
        "task": "binary" if n_classes == 2 else "multiclass",
        "n_images": int(labels.size),
        "class_names": [str(name) for name in class_names],
        "positive_class": str(class_names[1]) if n_classes == 2 else None,
        "macro_auc": finite_or_none(float(_macro_auc(aucs))),
        "macro_auc_ci": boot["macro_auc"],
        "accuracy": float(accuracy_score(labels, predicted)),
        "accuracy_ci": boot["accuracy"],
        "balanced_accuracy": float(balanced),
        "balanced_accuracy_ci": boot["balanced_accuracy"],
        "macro": {"precision": float(macro[0]), "recall": float(macro[1]), "f1": float(macro[2])},
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
        "undefined_auc_classes": [str(n) for n, a in zip(class_names, aucs, strict=True) if np.isnan(a)],
        "bootstrap": {"unit": boot["unit"], "n_units": boot["n_units"], "n_resamples": boot["n_resamples"]},
    }
