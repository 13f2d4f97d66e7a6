"""Multi-label classification metrics: per-class ROC AUC with bootstrap intervals, thresholds, confusion counts.

Conventions (as in torchxrayvision): ``y_true`` has shape ``(n_images, n_classes)`` with 1 = positive,
0 = negative and NaN = unknown; an unknown label is left out of every metric of its class. ``y_prob``
holds probabilities (after the sigmoid) in [0, 1]. A prediction counts as positive when
``prob >= threshold``, the rule ``sklearn.metrics.roc_curve`` uses for its thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score, roc_curve

from common.errors import ConfigError, DataError
from common.metrics.bootstrap import resample_counts, resampling_unit
from common.metrics.formatting import finite_or_none as _finite_or_none
from common.metrics.formatting import mean_or_none as _mean_or_none

__all__ = [
    "choose_thresholds",
    "per_class_auc",
    "rank_auc",
    "bootstrap_auc_ci",
    "threshold_metrics",
    "compute_classification_metrics",
]

_SCORES = ("accuracy", "precision", "recall", "f1")
# Resample counts are processed in blocks of about this many cells, so memory stays bounded for large test sets.
_BOOT_BLOCK_CELLS = 4_000_000


def _validate(
    y_true: ArrayLike, y_prob: ArrayLike, class_names: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(y_true, y_prob)`` as float arrays, or raise DataError naming what is wrong."""
    labels, probs = np.asarray(y_true, dtype=float), np.asarray(y_prob, dtype=float)
    if labels.ndim != 2 or labels.shape[0] == 0:
        raise DataError(f"y_true must be 2-D (n_images >= 1, n_classes); found shape {labels.shape}")
    if probs.shape != labels.shape:
        raise DataError(f"y_prob must have the shape of y_true; expected {labels.shape}, found {probs.shape}")
    if class_names is not None and len(class_names) != labels.shape[1]:
        raise DataError(f"expected {labels.shape[1]} class names (one per column), found {len(class_names)}")
    bad = ~np.isfinite(probs) | (probs < 0) | (probs > 1)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(
            f"y_prob must hold finite probabilities in [0, 1]; found {probs[row, col]} at row {row}, column {col}"
        )
    bad = ~np.isnan(labels) & (labels != 0) & (labels != 1)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(
            f"y_true labels must be 0, 1 or NaN (unknown); found {labels[row, col]} at row {row}, column {col}"
        )
    return labels, probs


def _known(y_true: np.ndarray, y_prob: np.ndarray, column: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels (as int) and probabilities of one class, restricted to images whose label is known."""
    known = ~np.isnan(y_true[:, column])
    return y_true[known, column].astype(int), y_prob[known, column]


def choose_thresholds(y_true: ArrayLike, y_prob: ArrayLike) -> np.ndarray:
    """Per-class threshold maximising Youden's J (TPR - FPR) on validation predictions.

    A class whose known labels are all one value (or that has none) gets 0.5.

    Returns:
        Thresholds of shape ``(n_classes,)`` clipped to [0, 1] (``roc_curve``'s first threshold is ``inf``).

    Example:
        >>> choose_thresholds([[0], [0], [1], [1]], [[0.1], [0.4], [0.35], [0.8]]).tolist()
        [0.8]
    """
    labels, probs = _validate(y_true, y_prob)
    thresholds = np.full(labels.shape[1], 0.5)
    for c in range(labels.shape[1]):
        y, p = _known(labels, probs, c)
        if np.unique(y).size < 2:
            continue
        fpr, tpr, candidates = roc_curve(y, p)
        thresholds[c] = candidates[np.argmax(tpr - fpr)]
    return np.clip(thresholds, 0.0, 1.0)


def per_class_auc(y_true: ArrayLike, y_prob: ArrayLike) -> np.ndarray:
    """ROC AUC per class over known labels; NaN where the known labels are all one value.

    Example:
        >>> per_class_auc([[0, 1], [1, 1]], [[0.2, 0.3], [0.9, 0.6]]).tolist()
        [1.0, nan]
    """
    labels, probs = _validate(y_true, y_prob)
    aucs = np.full(labels.shape[1], np.nan)
    for c in range(labels.shape[1]):
        y, p = _known(labels, probs, c)
        if np.unique(y).size == 2:
            aucs[c] = roc_auc_score(y, p)
    return aucs


def rank_auc(y_true: ArrayLike, y_score: ArrayLike, weights: ArrayLike | None = None) -> np.ndarray:
    """Mann-Whitney ROC AUC of one class (ties count 1/2), for one or many weightings of the images at once.

    Args:
        y_true: labels ``(n,)`` in {0, 1}, no NaN.
        y_score: scores ``(n,)``.
        weights: non-negative image weights ``(n,)`` or ``(b, n)``, e.g. bootstrap resample counts;
            ``None`` weighs every image 1.

    Returns:
        AUC with shape ``weights.shape[:-1]`` (0-d without weights); NaN where the positive or the
        negative weight is 0.

    Example:
        >>> float(rank_auc([0, 1, 0, 1], [0.3, 0.7, 0.7, 0.7]))
        0.75
    """
    positive = np.asarray(y_true, dtype=bool)
    scores = np.asarray(y_score, dtype=float)
    w = np.ones(scores.shape) if weights is None else np.asarray(weights, dtype=float)
    if scores.size == 0:
        return np.full(w.shape[:-1], np.nan)
    order = np.argsort(scores, kind="stable")
    scores, positive, w = scores[order], positive[order], w[..., order]
    tie_starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])
    pos = np.add.reduceat(w * positive, tie_starts, axis=-1)
    neg = np.add.reduceat(w * ~positive, tie_starts, axis=-1)
    neg_below = np.cumsum(neg, axis=-1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (neg_below + 0.5 * neg)).sum(axis=-1) / (pos.sum(axis=-1) * neg.sum(axis=-1))


def _percentile_interval(values: np.ndarray, alpha: float) -> list[float] | None:
    if values.size == 0:
        return None
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return [float(low), float(high)]


def bootstrap_auc_ci(
    y_true: ArrayLike, y_prob: ArrayLike, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
    groups: Sequence[object] | None = None,
) -> dict[str, Any]:
    """Percentile bootstrap intervals of the mean AUC and of each class's AUC, resampling patients or images.

    With ``groups`` (one patient id per image) each resample draws patients with replacement, every drawn
    patient bringing all its images (a cluster bootstrap, :mod:`common.metrics.bootstrap`); without, it draws
    ``n_images`` rows with replacement. Draws come from ``numpy.random.default_rng(seed)``. A resample's
    mean AUC averages the classes defined in it; resamples with no defined class are skipped, and a class's
    interval uses only the resamples where it is defined.

    Returns:
        ``{"mean_auc_ci_low", "mean_auc_ci_high", "per_class_ci", "n_boot", "unit", "n_units"}`` (unit
        ``"patient"`` or ``"image"``); bounds are ``None`` and ``per_class_ci`` entries ``None`` where no
        resample defines them (always so for ``n_boot=0``).

    Example:
        >>> ci = bootstrap_auc_ci([[0], [1], [0], [1]], [[0.1], [0.9], [0.4], [0.6]], n_boot=50)
        >>> ci["n_boot"], len(ci["per_class_ci"])
        (50, 1)
    """
    labels, probs = _validate(y_true, y_prob)
    if n_boot < 0:
        raise ConfigError(f"n_boot must be >= 0; found {n_boot}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1); found {alpha}")
    n_images, n_classes = labels.shape
    codes, n_units = resampling_unit(groups, n_images)
    rng = np.random.default_rng(seed)
    known = ~np.isnan(labels)
    aucs = np.full((n_boot, n_classes), np.nan)
    block = max(1, _BOOT_BLOCK_CELLS // n_images)
    for start in range(0, n_boot, block):
        size = min(block, n_boot - start)
        counts = resample_counts(rng, size, n_images, codes, n_units)
        for c in range(n_classes):
            rows_c = known[:, c]
            aucs[start : start + size, c] = rank_auc(labels[rows_c, c], probs[rows_c, c], counts[:, rows_c])
    defined = ~np.isnan(aucs)
    mean_aucs = np.nanmean(aucs[defined.any(axis=1)], axis=1)
    mean_ci = _percentile_interval(mean_aucs, alpha) or [None, None]
    return {
        "mean_auc_ci_low": mean_ci[0],
        "mean_auc_ci_high": mean_ci[1],
        "per_class_ci": [_percentile_interval(aucs[defined[:, c], c], alpha) for c in range(n_classes)],
        "n_boot": int(n_boot),
        "unit": "image" if codes is None else "patient",
        "n_units": n_units,
    }


def _binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 and confusion counts of one class at one threshold."""
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = (int(n) for n in confusion_matrix(y, pred, labels=[0, 1]).ravel())
    result: dict[str, Any] = {"threshold": float(threshold)}
    if y.size == 0:
        result.update(dict.fromkeys(_SCORES))
    else:
        precision, recall, f1, _ = precision_recall_fscore_support(y, pred, average="binary", zero_division=0)
        result.update(accuracy=(tp + tn) / y.size, precision=float(precision), recall=float(recall), f1=float(f1))
    result["confusion"] = {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    return result


def threshold_metrics(y_true: ArrayLike, y_prob: ArrayLike, thresholds: ArrayLike | float) -> dict[str, Any]:
    """Per-class accuracy, precision, recall, F1 (``zero_division=0``) and confusion counts, plus macro means.

    Args:
        y_true: labels ``(n_images, n_classes)``, NaN = unknown (left out per class).
        y_prob: probabilities of the same shape.
        thresholds: one threshold per class, or a single one for all.

    Returns:
        ``{"per_class": [{"threshold", "accuracy", "precision", "recall", "f1", "confusion": {"tn", "fp",
        "fn", "tp"}}, ...], "macro": {"accuracy", "precision", "recall", "f1"}}``; scores are ``None`` for a
        class with no known label, and such a class is left out of the macro means.

    Example:
        >>> threshold_metrics([[0], [1]], [[0.2], [0.7]], 0.5)["macro"]["f1"]
        1.0
    """
    labels, probs = _validate(y_true, y_prob)
    n_classes = labels.shape[1]
    cuts = np.asarray(thresholds, dtype=float)
    if cuts.ndim == 0:
        cuts = np.full(n_classes, float(cuts))
    if cuts.shape != (n_classes,) or not np.all((cuts >= 0) & (cuts <= 1)):
        raise DataError(f"expected {n_classes} thresholds in [0, 1] (one per class); found {cuts.tolist()}")
    per_class = [_binary_metrics(*_known(labels, probs, c), cuts[c]) for c in range(n_classes)]
    macro = {key: _mean_or_none([entry[key] for entry in per_class]) for key in _SCORES}
    return {"per_class": per_class, "macro": macro}


def _class_summary(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """Prevalence, positive count and probability RMSE of one class over its known labels."""
    if y.size == 0:
        return {"prevalence": None, "n_positive": 0, "rmse": None}
    return {
        "prevalence": float(y.mean()),
        "n_positive": int(y.sum()),
        "rmse": float(np.sqrt(np.mean((p - y) ** 2))),
    }


def compute_classification_metrics(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    class_names: Sequence[str],
    thresholds: ArrayLike | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    patient_ids: Sequence[object] | None = None,
) -> dict[str, Any]:
    """Every evaluation number of a multi-label classifier, as a JSON-serialisable dict (``None``, never NaN).

    Args:
        y_true: labels ``(n_images, n_classes)``: 1, 0 or NaN (unknown).
        y_prob: probabilities of the same shape, finite and in [0, 1].
        class_names: one name per column.
        thresholds: per-class thresholds chosen on validation data (see :func:`choose_thresholds`);
            ``None`` uses 0.5 for the ``at_threshold`` block too.
        n_boot: bootstrap resamples for the AUC intervals.
        seed: seed of the bootstrap generator.
        patient_ids: one patient id per image: the intervals then resample patients (cluster bootstrap);
            ``None`` resamples images.

    Returns:
        Keys ``n_images``, ``class_names``, ``per_class`` (name, auc, auc_ci, prevalence, n_positive, rmse,
        ``at_0.5``, ``at_threshold``), ``mean_auc``, ``mean_auc_ci``, ``bootstrap`` (``unit`` patient or
        image, ``n_units``, ``n_resamples``), ``undefined_auc_classes``, ``macro_at_0.5``,
        ``macro_at_threshold``, ``rmse``, ``threshold_source``.

    Raises:
        DataError: shapes differ, names do not match the columns, or values are out of range.

    Example:
        >>> m = compute_classification_metrics([[0], [1]], [[0.2], [0.7]], ["Effusion"], n_boot=10)
        >>> m["mean_auc"], m["threshold_source"]
        (1.0, '0.5 (no validation predictions)')
    """
    labels, probs = _validate(y_true, y_prob, class_names)
    aucs = per_class_auc(labels, probs)
    boot = bootstrap_auc_ci(labels, probs, n_boot=n_boot, seed=seed, groups=patient_ids)
    at_half = threshold_metrics(labels, probs, 0.5)
    at_cut = threshold_metrics(labels, probs, 0.5 if thresholds is None else thresholds)
    per_class = []
    for c, name in enumerate(class_names):
        half = {key: value for key, value in at_half["per_class"][c].items() if key != "threshold"}
        per_class.append(
            {
                "name": str(name),
                "auc": _finite_or_none(aucs[c]),
                "auc_ci": boot["per_class_ci"][c],
                **_class_summary(*_known(labels, probs, c)),
                "at_0.5": half,
                "at_threshold": at_cut["per_class"][c],
            }
        )
    known = ~np.isnan(labels)
    return {
        "n_images": int(labels.shape[0]),
        "class_names": [str(name) for name in class_names],
        "per_class": per_class,
        "mean_auc": _mean_or_none([_finite_or_none(a) for a in aucs]),
        "mean_auc_ci": [boot["mean_auc_ci_low"], boot["mean_auc_ci_high"]],
        "bootstrap": {"unit": boot["unit"], "n_units": boot["n_units"], "n_resamples": boot["n_boot"]},
        "undefined_auc_classes": [str(name) for name, a in zip(class_names, aucs, strict=True) if np.isnan(a)],
        "macro_at_0.5": at_half["macro"],
        "macro_at_threshold": at_cut["macro"],
        "rmse": float(np.sqrt(np.mean((probs[known] - labels[known]) ** 2))) if known.any() else None,
        "threshold_source": "validation" if thresholds is not None else "0.5 (no validation predictions)",
    }
