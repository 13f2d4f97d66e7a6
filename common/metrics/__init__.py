"""Multi-label classification metrics (AUC with bootstrap CIs, thresholds, confusion counts) and the report."""

from __future__ import annotations

from common.metrics.classification import (
    bootstrap_auc_ci,
    choose_thresholds,
    compute_classification_metrics,
    per_class_auc,
    rank_auc,
    threshold_metrics,
)
from common.metrics.report import (
    format_metrics_table,
    plot_confusion_matrices,
    plot_roc_curves,
    write_classification_report,
)

__all__ = [
    "bootstrap_auc_ci",
    "choose_thresholds",
    "compute_classification_metrics",
    "per_class_auc",
    "rank_auc",
    "threshold_metrics",
    "format_metrics_table",
    "plot_confusion_matrices",
    "plot_roc_curves",
    "write_classification_report",
]
