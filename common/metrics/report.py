"""Evaluation report: ``metrics.json``, ``report.md``, two figures and the raw predictions, as one atomic folder swap.

Figures are drawn on ``matplotlib.figure.Figure`` objects with an Agg canvas, never through pyplot, so
nothing touches matplotlib's global backend or figure registry (and no figure is left open).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import roc_curve

from common.errors import DataError
from common.io import atomic_directory, atomic_write_json, atomic_write_text, recover_directory
from common.metrics.formatting import NA as _NA
from common.metrics.formatting import fmt as _fmt
from common.metrics.formatting import new_figure as _new_figure

__all__ = [
    "PREDICTIONS_FILE",
    "write_classification_report",
    "format_metrics_table",
    "plot_roc_curves",
    "plot_confusion_matrices",
    "save_predictions",
    "load_predictions",
]

logger = logging.getLogger(__name__)

# Not "test_predictions": evaluate.json can be pointed at any split; the report folder says which.
PREDICTIONS_FILE = "predictions.npz"

def _fmt_auc(auc: float | None, ci: list[float | None] | None) -> str:
    if auc is None:
        return f"{_NA} (one label value)"
    if ci is None or None in ci:
        return _fmt(auc)
    return f"{auc:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def format_metrics_table(metrics: dict[str, Any]) -> str:
    """Markdown summary of :func:`~common.metrics.compute_classification_metrics` output.

    One row per class (AUC with 95% CI, prevalence, F1 at 0.5 and at the chosen threshold, threshold),
    a macro table at both thresholds, then mean AUC, RMSE, image count and the undefined-AUC note.

    Example:
        >>> print(format_metrics_table(metrics))  # doctest: +SKIP
    """
    lines = [
        "| Class | AUC [95% CI] | Prevalence | F1 @ 0.5 | F1 @ threshold | Threshold |",
        "|---|---|---|---|---|---|",
    ]
    for entry in metrics["per_class"]:
        at = entry["at_threshold"]
        name = entry["name"].replace("|", "\\|")
        lines.append(
            f"| {name} | {_fmt_auc(entry['auc'], entry['auc_ci'])} | {_fmt(entry['prevalence'])} "
            f"| {_fmt(entry['at_0.5']['f1'])} | {_fmt(at['f1'])} | {_fmt(at['threshold'])} |"
        )
    lines += ["", "| Macro | Accuracy | Precision | Recall | F1 |", "|---|---|---|---|---|"]
    for label, key in (("@ 0.5", "macro_at_0.5"), ("@ threshold", "macro_at_threshold")):
        scores = " | ".join(_fmt(metrics[key][score]) for score in ("accuracy", "precision", "recall", "f1"))
        lines.append(f"| {label} | {scores} |")
    n_defined = len(metrics["class_names"]) - len(metrics["undefined_auc_classes"])
    lines += [
        "",
        f"- Mean AUC over {n_defined} classes [95% CI]: {_fmt_auc(metrics['mean_auc'], metrics['mean_auc_ci'])}",
        f"- RMSE of probabilities over known labels: {_fmt(metrics['rmse'], 4)}",
        f"- Images: {metrics['n_images']}",
        f"- Confidence intervals: {_bootstrap_text(metrics.get('bootstrap'))}",
        f"- Thresholds: {metrics['threshold_source']}",
    ]
    if metrics["undefined_auc_classes"]:
        lines.append(
            "- AUC undefined (known labels all one value; excluded from the mean): "
            + ", ".join(metrics["undefined_auc_classes"])
        )
    return "\n".join(lines)


def plot_roc_curves(
    y_true: np.ndarray, y_prob: np.ndarray, metrics: dict[str, Any], path: str | os.PathLike, title: str = "Evaluation"
) -> None:
    """Draw every class's ROC curve (known labels only) on one axes with a chance diagonal; save a PNG.

    Classes with undefined AUC have no curve and are named in the legend title.
    """
    fig = _new_figure(7.0, 6.5)
    ax = fig.add_subplot()
    colors = matplotlib.colormaps["tab20"]
    for c, entry in enumerate(metrics["per_class"]):
        if entry["auc"] is None:
            continue
        known = ~np.isnan(y_true[:, c])
        fpr, tpr, _ = roc_curve(y_true[known, c].astype(int), y_prob[known, c])
        ax.plot(fpr, tpr, color=colors(c % 20), linewidth=1.5, label=f"{entry['name']} (AUC {entry['auc']:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate", ylabel="True positive rate")
    ax.set_title(f"{title}: ROC curves")
    undefined = metrics["undefined_auc_classes"]
    ax.legend(loc="lower right", fontsize="small", title=f"no curve: {', '.join(undefined)}" if undefined else None)
    fig.savefig(path, dpi=120)


def plot_confusion_matrices(metrics: dict[str, Any], path: str | os.PathLike, title: str = "Evaluation") -> None:
    """Draw one annotated 2x2 confusion matrix per class at its chosen threshold, in a grid; save a PNG."""
    entries = metrics["per_class"]
    ncols = min(4, len(entries))
    nrows = math.ceil(len(entries) / ncols)
    fig = _new_figure(3.0 * ncols, 3.0 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, entry in zip(axes.flat, entries, strict=False):
        confusion = entry["at_threshold"]["confusion"]
        counts = np.array([[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]])
        vmax = max(1, int(counts.max()))
        ax.imshow(counts, cmap="Blues", vmin=0, vmax=vmax)
        for (row, col), count in np.ndenumerate(counts):
            color = "white" if count > vmax / 2 else "black"
            ax.text(col, row, str(count), ha="center", va="center", color=color, fontsize="large")
        ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["pred 0", "pred 1"], yticklabels=["true 0", "true 1"])
        ax.set_title(f"{entry['name']}\nthreshold {entry['at_threshold']['threshold']:.3f}", fontsize="medium")
    for ax in axes.flat[len(entries) :]:
        ax.set_axis_off()
    fig.suptitle(f"{title}: confusion matrices")
    fig.savefig(path, dpi=120)


def save_predictions(
    path: str | os.PathLike, y_true: np.ndarray, y_prob: np.ndarray, class_names: list[str]
) -> None:
    """Save the labels, probabilities and class names an evaluation was computed from, as an ``.npz``.

    Keys: ``y_true`` (float, NaN = unknown label), ``y_prob`` (float) and ``class_names`` (unicode strings, so
    :func:`numpy.load` needs no pickle). Later analyses (the experiment leaderboard's pooled ROC) read it back
    with :func:`load_predictions`.

    Example:
        >>> save_predictions("eval/predictions.npz", y_true, y_prob, ["Atelectasis", "Effusion"])  # doctest: +SKIP
    """
    with open(path, "wb") as handle:
        np.savez_compressed(
            handle,
            y_true=np.asarray(y_true, dtype=float),
            y_prob=np.asarray(y_prob, dtype=float),
            class_names=np.asarray(class_names, dtype=str),
        )


def load_predictions(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a file written by :func:`save_predictions`: ``(y_true, y_prob, class_names)``.

    Raises:
        DataError: the file is unreadable, lacks a key, or its arrays disagree in shape.

    Example:
        >>> y_true, y_prob, names = load_predictions("eval/predictions.npz")  # doctest: +SKIP
    """
    recover_directory(Path(path).parent)  # an evaluation killed while swapping its eval/ folder in
    try:
        with np.load(path, allow_pickle=False) as data:
            y_true, y_prob = np.asarray(data["y_true"], dtype=float), np.asarray(data["y_prob"], dtype=float)
            names = [str(name) for name in data["class_names"]]
    except (OSError, ValueError, KeyError) as error:
        expected = "expected keys y_true, y_prob, class_names"
        raise DataError(f"cannot read predictions {path}: {error}; {expected}") from error
    if y_true.ndim != 2 or y_true.shape != y_prob.shape or y_true.shape[1] != len(names):
        raise DataError(
            f"predictions {path}: y_true {y_true.shape}, y_prob {y_prob.shape} and {len(names)} class names disagree; "
            "expected two (n_images, n_classes) arrays and one name per class"
        )
    return y_true, y_prob, names


def write_classification_report(
    metrics: dict[str, Any],
    output_dir: str | os.PathLike,
    y_true: ArrayLike,
    y_prob: ArrayLike,
    title: str = "Evaluation",
    plots: bool = True,
) -> Path:
    """Write ``metrics.json``, ``report.md``, ``roc_curves.png``, ``confusion_matrices.png`` and ``predictions.npz``.

    ``predictions.npz`` (:data:`PREDICTIONS_FILE`) holds ``y_true``, ``y_prob`` and ``class_names`` as
    described in :func:`save_predictions`. All files are written to a temporary sibling folder that
    replaces ``output_dir`` only once complete, so a failure leaves any earlier report untouched.

    Args:
        metrics: output of :func:`~common.metrics.compute_classification_metrics`.
        output_dir: report folder; replaced as a whole.
        y_true: the labels the metrics were computed from, ``(n_images, n_classes)``, NaN = unknown.
        y_prob: the matching probabilities (for the ROC curves and ``predictions.npz``).
        title: heading of the report and the figures.
        plots: draw the two PNGs. ``False`` (a federated round's report, where drawing them was the largest
            fixed cost) writes no PNG and leaves them out of ``report.md``; ``metrics.json`` and
            ``predictions.npz`` are the same.

    Returns:
        ``output_dir`` as a Path.

    Raises:
        DataError: ``y_true`` / ``y_prob`` do not have the shape the metrics describe.

    Example:
        >>> write_classification_report(metrics, "eval/test", y_true, y_prob)  # doctest: +SKIP
    """
    labels, probs = np.asarray(y_true, dtype=float), np.asarray(y_prob, dtype=float)
    expected = (metrics["n_images"], len(metrics["class_names"]))
    if labels.shape != expected or probs.shape != expected:
        raise DataError(
            f"y_true and y_prob must match the metrics' shape {expected}; found {labels.shape} and {probs.shape}"
        )
    figures = [
        "![ROC curves](roc_curves.png)",
        "",
        "![Confusion matrices at the chosen thresholds](confusion_matrices.png)",
        "",
    ]
    markdown = "\n".join([f"# {title}", "", format_metrics_table(metrics), "", *(figures if plots else [])])
    with atomic_directory(output_dir) as tmp:
        atomic_write_json(tmp / "metrics.json", metrics)
        atomic_write_text(tmp / "report.md", markdown)
        if plots:
            plot_roc_curves(labels, probs, metrics, tmp / "roc_curves.png", title=title)
            plot_confusion_matrices(metrics, tmp / "confusion_matrices.png", title=title)
        save_predictions(tmp / PREDICTIONS_FILE, labels, probs, metrics["class_names"])
    logger.info("wrote evaluation report (%d images, %d classes) to %s", *expected, output_dir)
    return Path(output_dir)


def _bootstrap_text(boot: dict | None) -> str:
    """How the intervals were resampled, e.g. ``percentile bootstrap over 24 patients ..., 1000 resamples``."""
    if not boot:
        return "percentile bootstrap over images"
    unit = "patients (cluster bootstrap: each patient's images together)" if boot["unit"] == "patient" else "images"
    return f"percentile bootstrap over {boot['n_units']} {unit}, {boot['n_resamples']} resamples"
