"""Handlers and metrics that plug medxfer into MONAI's ignite engines."""

from __future__ import annotations

from common.engines.auc_metric import MultilabelAUC
from common.engines.batch import PlainTensorBatch
from common.engines.checkpoint import AtomicDiskSaver, ModelCheckpointSaver
from common.engines.collect import PredictionCollector, ProbabilityCSVWriter
from common.engines.precision import PrecisionHandler
from common.engines.report import ClassificationReportHandler
from common.engines.resume import TrainingCheckpoint, run_fingerprint
from common.engines.segmentation import MeanDice, SegmentationMaskWriter, SegmentationReportHandler

__all__ = [
    "AtomicDiskSaver",
    "ModelCheckpointSaver",
    "TrainingCheckpoint",
    "run_fingerprint",
    "ClassificationReportHandler",
    "MeanDice",
    "PlainTensorBatch",
    "PrecisionHandler",
    "MultilabelAUC",
    "PredictionCollector",
    "ProbabilityCSVWriter",
    "SegmentationMaskWriter",
    "SegmentationReportHandler",
]
