"""Leaderboard figures: mean and 95% CI per configuration, and the pooled ROC curves of the best configurations.

Figures are drawn on ``matplotlib.figure.Figure`` objects with an Agg canvas (never pyplot) and saved through
:func:`common.io.atomic_save`, so a reader never sees half a PNG.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from common.errors import DataError
from common.experiments.stats import ConfigSummary, lower_is_better
from common.io import atomic_save
from common.metrics.formatting import new_figure

__all__ = ["RocCurve", "micro_roc", "plot_leaderboard", "plot_roc_best"]

Board = tuple[str, str]  # (bundle, metric)


@dataclass(frozen=True)
class RocCurve:
    """One configuration's micro-averaged ROC curve, from one run."""

    label: str
    fpr: np.ndarray
    tpr: np.ndarray
    auc: float


def micro_roc(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Micro-averaged ROC: every (image, finding) pair with a known label pooled into one binary problem.

    Returns:
        ``(fpr, tpr, auc)``.

    Raises:
        DataError: no known label, or the known labels are all one value (the curve is undefined).

    Example:
        >>> fpr, tpr, auc = micro_roc(np.array([[0, 1], [1, np.nan]]), np.array([[0.2, 0.9], [0.7, 0.5]]))
        >>> auc
        1.0
    """
    labels, scores = np.asarray(y_true, dtype=float).ravel(), np.asarray(y_prob, dtype=float).ravel()
    known = ~np.isnan(labels)
    values = np.unique(labels[known])
    if values.size != 2 or not set(values.tolist()) <= {0.0, 1.0}:
        raise DataError(f"a micro-averaged ROC needs known labels 0 and 1; found values {values.tolist()}")
    fpr, tpr, _ = roc_curve(labels[known].astype(int), scores[known])
    return fpr, tpr, float(roc_auc_score(labels[known].astype(int), scores[known]))


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    return atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=120))


def plot_leaderboard(
    boards: Mapping[Board, Sequence[ConfigSummary]], path: str | os.PathLike, title: str, baseline: str
) -> Path:
    """One panel per (bundle, metric): a bar per configuration (mean) with 95% CI error bars and its seeds as dots.

    Configurations are listed best first, as ranked; the baseline strategy is drawn in a second colour. Bars start
    at the metric's chance level (0.5 for an AUC, 0 otherwise), so their length is the gain over chance.
    """
    heights = [0.32 * len(summaries) + 0.9 for summaries in boards.values()]
    fig = new_figure(9.0, sum(heights) + 0.6)
    axes = fig.subplots(len(boards), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    colors = matplotlib.colormaps["tab10"]
    for ax, ((bundle, metric), summaries) in zip(axes, boards.items(), strict=True):
        origin = 0.5 if "auc" in metric.lower() else 0.0
        y = np.arange(len(summaries))[::-1]
        means = np.array([s.mean for s in summaries])
        low = np.array([np.nan if s.ci_low is None else s.mean - s.ci_low for s in summaries])
        high = np.array([np.nan if s.ci_high is None else s.ci_high - s.mean for s in summaries])
        is_base = np.array([s.strategy == baseline for s in summaries])
        series = ((~is_base, colors(0), "mean, 95% CI"), (is_base, colors(1), f"{baseline} (baseline)"))
        for mask, color, name in series:
            if mask.any():
                ax.barh(y[mask], means[mask] - origin, left=origin, height=0.6, color=color, alpha=0.75, label=name)
        # CIs drawn as capped lines, not barh(xerr=...): matplotlib converts a one-bar (2, 1) xerr's rows with
        # math.isfinite, which NumPy deprecated (1.25) for arrays with ndim > 0.
        for row, mean, below, above in zip(y, means, low, high, strict=True):
            if np.isfinite(below) and np.isfinite(above):
                ax.plot([mean - below, mean + above], [row, row], color="black", linewidth=1, marker="|",
                        markersize=6)
        for row, summary in zip(y, summaries, strict=True):
            ax.plot([run.value for run in summary.runs], [row] * summary.n, "o", color="black", markersize=3,
                    label="one seed" if row == y[0] else None)
        ax.axvline(origin, color="grey", linewidth=0.8)
        ax.set_yticks(y, [f"{s.rank}. {s.label} (n={s.n})" for s in summaries], fontsize="small")
        ax.set_ylim(-0.7, len(summaries) - 0.3)
        ax.set_xlabel(f"{metric} ({'lower' if lower_is_better(metric) else 'higher'} is better)")
        ax.set_title(bundle, fontsize="medium")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="lower right", fontsize="x-small")
    fig.suptitle(title)
    return _save(fig, path)


def plot_roc_best(curves: Mapping[Board, Sequence[RocCurve]], path: str | os.PathLike, title: str) -> Path:
    """One panel per (bundle, metric) with the micro-averaged ROC curve of each listed configuration."""
    ncols = min(3, len(curves))
    nrows = -(-len(curves) // ncols)
    fig = new_figure(5.5 * ncols, 5.2 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colors = matplotlib.colormaps["tab10"]
    for ax, ((bundle, metric), board_curves) in zip(axes.flat, curves.items(), strict=False):
        for i, curve in enumerate(board_curves):
            ax.plot(curve.fpr, curve.tpr, color=colors(i % 10), linewidth=1.5,
                    label=f"{curve.label} (micro AUC {curve.auc:.3f})")
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
        ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate", ylabel="True positive rate")
        ax.set_title(f"{bundle}\nbest by {metric}; median-seed run each", fontsize="medium")
        ax.legend(loc="lower right", fontsize="x-small")
    for ax in axes.flat[len(curves):]:
        ax.set_axis_off()
    fig.suptitle(f"{title}: micro-averaged ROC")
    return _save(fig, path)
