"""Single-label evaluation report: ``metrics.json``, ``report.md``, ROC and confusion-matrix PNGs, ``predictions.npz``.

Written as one atomic folder swap (:func:`common.io.atomic_directory`), like the multi-label report
(:mod:`common.metrics.report`); ``predictions.npz`` has the same keys (``y_true`` one-hot, ``y_prob``,
``class_names``) so the experiment leaderboard's pooled ROC reads it unchanged, plus ``y_label`` (class indices).
Figures are drawn on Agg-backed ``Figure`` objects, never through pyplot.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import roc_curve

from common.errors import DataError
from common.io import atomic_directory, atomic_write_json, atomic_write_text
from common.metrics.formatting import NA, fmt, new_figure
from common.metrics.report import PREDICTIONS_FILE
from common.metrics.single_label import check_single_label

__all__ = ["format_single_label_table", "plot_single_label_roc", "plot_confusion_matrix",
           "write_single_label_report"]  # fmt: skip

logger = logging.getLogger(__name__)


def _with_ci(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return f"{NA} (one label value)"
    return fmt(value) if not ci else f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _bootstrap_text(boot: dict[str, Any]) -> str:
    unit = "patients (cluster bootstrap: each patient's images together)" if boot["unit"] == "patient" else "images"
    return f"percentile bootstrap over {boot['n_units']} {unit}, {boot['n_resamples']} resamples"


def format_single_label_table(metrics: dict[str, Any]) -> str:
    """Markdown summary of :func:`~common.metrics.single_label.compute_single_label_metrics` output.

    Example:
        >>> print(format_single_label_table(metrics))  # doctest: +SKIP
    """
    binary = metrics["task"] == "binary"
    key = f"AUC of {metrics['positive_class']} (binary)" if binary else "Macro one-vs-rest AUC"
    lines = [
        f"- {key} [95% CI]: {_with_ci(metrics['macro_auc'], metrics['macro_auc_ci'])}",
        f"- Accuracy [95% CI]: {_with_ci(metrics['accuracy'], metrics['accuracy_ci'])}",
        f"- Balanced accuracy [95% CI]: {_with_ci(metrics['balanced_accuracy'], metrics['balanced_accuracy_ci'])}",
        f"- Macro precision / recall / F1: {fmt(metrics['macro']['precision'])} / {fmt(metrics['macro']['recall'])} "
        f"/ {fmt(metrics['macro']['f1'])}",
        f"- Images: {metrics['n_images']}; predicted class: "
        + ("class 1 when its probability >= 0.5" if binary else "arg-max of the softmax"),
        f"- Confidence intervals: {_bootstrap_text(metrics['bootstrap'])}",
        "",
        "| Class | Images | Precision | Recall | F1 | AUC one-vs-rest [95% CI] |",
        "|---|---|---|---|---|---|",
    ]
    for entry in metrics["per_class"]:
        name = entry["name"].replace("|", "\\|")
        lines.append(f"| {name} | {entry['support']} | {fmt(entry['precision'])} | {fmt(entry['recall'])} "
                     f"| {fmt(entry['f1'])} | {_with_ci(entry['auc'], entry['auc_ci'])} |")
    if metrics["undefined_auc_classes"]:
        lines += ["", "AUC undefined (class absent from this split; left out of the macro AUC): "
                  + ", ".join(metrics["undefined_auc_classes"])]
    return "\n".join(lines)


def plot_single_label_roc(y_label: np.ndarray, y_prob: np.ndarray, metrics: dict[str, Any],
                          path: str | os.PathLike, title: str = "Evaluation") -> None:  # fmt: skip
    """One-vs-rest ROC curve of every class with a defined AUC (binary: the positive class only); save a PNG."""
    fig = new_figure(7.0, 6.5)
    ax = fig.add_subplot()
    colors = matplotlib.colormaps["tab10" if len(metrics["class_names"]) <= 10 else "tab20"]  # tab20 pairs shades
    shown = [1] if metrics["task"] == "binary" else range(len(metrics["class_names"]))
    for c in shown:
        entry = metrics["per_class"][c]
        if entry["auc"] is None:
            continue
        fpr, tpr, _ = roc_curve(y_label == c, y_prob[:, c])
        ax.plot(fpr, tpr, color=colors(c % colors.N), linewidth=1.5, label=f"{entry['name']} (AUC {entry['auc']:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate", ylabel="True positive rate")
    ax.set_title(f"{title}\nROC curves (one-vs-rest)", fontsize="medium")
    ax.legend(loc="lower right", fontsize="small")
    fig.savefig(path, dpi=120)


def plot_confusion_matrix(metrics: dict[str, Any], path: str | os.PathLike, title: str = "Evaluation") -> None:
    """The ``C x C`` confusion matrix (rows: true class, columns: predicted), annotated with counts; save a PNG."""
    counts = np.asarray(metrics["confusion_matrix"])
    names = metrics["class_names"]
    side = max(4.0, 0.6 * len(names) + 2.0)
    fig = new_figure(side + 0.8, side)
    ax = fig.add_subplot()
    vmax = max(1, int(counts.max()))
    image = ax.imshow(counts, cmap="Blues", vmin=0, vmax=vmax)
    for (row, col), count in np.ndenumerate(counts):
        ax.text(col, row, str(count), ha="center", va="center", color="white" if count > vmax / 2 else "black")
    ticks = list(range(len(names)))
    ax.set(xticks=ticks, yticks=ticks, xlabel="Predicted class", ylabel="True class")
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_yticklabels(names)
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_title(f"{title}\nconfusion matrix", fontsize="medium")
    fig.savefig(path, dpi=120)


def write_single_label_report(metrics: dict[str, Any], output_dir: str | os.PathLike, y_label: ArrayLike,
                              y_prob: ArrayLike, title: str = "Evaluation", plots: bool = True) -> Path:  # fmt: skip
    """Write ``metrics.json``, ``report.md``, ``roc_curves.png``, ``confusion_matrix.png`` and ``predictions.npz``.

    All are written to a temporary sibling folder that replaces ``output_dir`` only once complete.

    Args:
        metrics: output of :func:`~common.metrics.single_label.compute_single_label_metrics`.
        output_dir: report folder; replaced as a whole.
        y_label: the class index of every image, ``(n_images,)``.
        y_prob: the matching probabilities, ``(n_images, n_classes)``.
        title: heading of the report and the figures.
        plots: draw the two PNGs. ``False`` (a federated round's report, where drawing them was the largest
            fixed cost) writes no PNG and leaves them out of ``report.md``; ``metrics.json`` and
            ``predictions.npz`` are the same.

    Returns:
        ``output_dir`` as a Path.

    Raises:
        DataError: ``y_label`` / ``y_prob`` do not match the metrics' shape.

    Example:
        >>> write_single_label_report(metrics, "eval", y_label, y_prob)  # doctest: +SKIP
    """
    labels, probs = check_single_label(y_label, y_prob)
    expected = (metrics["n_images"], len(metrics["class_names"]))
    if probs.shape != expected:
        raise DataError(f"y_prob must match the metrics' shape {expected}; found {probs.shape}")
    figures = ["![ROC curves](roc_curves.png)", "", "![Confusion matrix](confusion_matrix.png)", ""]
    markdown = "\n".join([f"# {title}", "", format_single_label_table(metrics), "", *(figures if plots else [])])
    with atomic_directory(output_dir) as tmp:
        atomic_write_json(tmp / "metrics.json", metrics)
        atomic_write_text(tmp / "report.md", markdown)
        if plots:
            plot_single_label_roc(labels, probs, metrics, tmp / "roc_curves.png", title=title)
            plot_confusion_matrix(metrics, tmp / "confusion_matrix.png", title=title)
        with open(tmp / PREDICTIONS_FILE, "wb") as handle:
            np.savez_compressed(handle, y_true=np.eye(probs.shape[1])[labels], y_prob=probs, y_label=labels,
                                class_names=np.asarray(metrics["class_names"], dtype=str))  # fmt: skip
    logger.info("wrote single-label evaluation report (%d images, %d classes) to %s", *expected, output_dir)
    return Path(output_dir)
