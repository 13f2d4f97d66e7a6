"""Evaluation metrics and reports: multi-label classification (AUC, thresholds) and segmentation (Dice, IoU, HD95)."""

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
    PREDICTIONS_FILE,
    format_metrics_table,
    load_predictions,
    plot_confusion_matrices,
    plot_roc_curves,
    save_predictions,
    write_classification_report,
)
from common.metrics.segmentation import (
    compute_segmentation_metrics,
    confusion_matrix,
    dice_iou_from_confusion,
    hd95,
    hd95_per_class,
    labels_from_scores,
    segmentation_metrics_from_confusion,
)
from common.metrics.segmentation_report import (
    colorize_labels,
    format_segmentation_table,
    plot_segmentation_confusion,
    plot_segmentation_overlay,
    segmentation_palette,
    write_segmentation_report,
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
    "PREDICTIONS_FILE",
    "save_predictions",
    "load_predictions",
    "compute_segmentation_metrics",
    "confusion_matrix",
    "dice_iou_from_confusion",
    "hd95",
    "hd95_per_class",
    "labels_from_scores",
    "segmentation_metrics_from_confusion",
    "colorize_labels",
    "format_segmentation_table",
    "plot_segmentation_confusion",
    "plot_segmentation_overlay",
    "segmentation_palette",
    "write_segmentation_report",
]
