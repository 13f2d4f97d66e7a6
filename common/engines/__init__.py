"""Handlers and metrics that plug medxfer into MONAI's ignite engines."""

from __future__ import annotations

from common.engines.auc_metric import MultilabelAUC
from common.engines.collect import PredictionCollector, ProbabilityCSVWriter
from common.engines.report import ClassificationReportHandler
from common.engines.segmentation import MeanDice, SegmentationMaskWriter, SegmentationReportHandler

__all__ = [
    "ClassificationReportHandler",
    "MeanDice",
    "MultilabelAUC",
    "PredictionCollector",
    "ProbabilityCSVWriter",
    "SegmentationMaskWriter",
    "SegmentationReportHandler",
]
