"""Handler that turns an evaluator's predictions into eval/metrics.json, report.md, plots and predictions.npz."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from ignite.engine import Engine

from common.engines.collect import PredictionCollector
from common.errors import DataError
from common.metrics import (
    choose_thresholds,
    compute_classification_metrics,
    format_metrics_table,
    write_classification_report,
)

__all__ = ["ClassificationReportHandler"]

logger = logging.getLogger(__name__)


class ClassificationReportHandler(PredictionCollector):
    """At the end of an evaluation run, compute the classification metrics and write the report folder.

    Args:
        output_dir: the report folder (metrics.json, report.md, roc_curves.png, confusion_matrices.png,
            predictions.npz); replaced as a whole only once everything is written, so an earlier report is
            never half overwritten.
        class_names: names of the outputs, in order.
        calibration: a :class:`PredictionCollector` that ran on the validation split first; per-class
            thresholds are chosen on its predictions (Youden's J). Without it only 0.5 is used.
        n_boot: bootstrap resamples for the AUC confidence intervals.
        seed: bootstrap seed.
        title: report heading.
        plots: write the ROC and confusion-matrix PNGs (``False``: a federated round's report, see
            :func:`~common.metrics.write_classification_report`).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: Sequence[str],
        calibration: PredictionCollector | None = None,
        n_boot: int = 1000,
        seed: int = 0,
        title: str = "Evaluation",
        plots: bool = True,
    ) -> None:
        super().__init__()
        self.output_dir = Path(output_dir)
        self.class_names = list(class_names)
        self.calibration = calibration
        self.n_boot, self.seed, self.title, self.plots = int(n_boot), int(seed), title, bool(plots)
        self.metrics: dict | None = None

    def completed(self, engine: Engine) -> None:
        y_true, y_prob = self.y_true, self.y_prob
        if y_true.shape != y_prob.shape:
            raise DataError(f"evaluation needs a label for every image: {y_prob.shape[0]} predictions, "
                            f"labels of shape {y_true.shape}")
        thresholds = None
        if self.calibration is not None and self.calibration.y_true.size:
            thresholds = choose_thresholds(self.calibration.y_true, self.calibration.y_prob)
        self.metrics = compute_classification_metrics(
            y_true, y_prob, self.class_names, thresholds=thresholds, n_boot=self.n_boot, seed=self.seed,
            patient_ids=self.patient_ids,
        )
        write_classification_report(self.metrics, self.output_dir, y_true, y_prob, title=self.title,
                                    plots=self.plots)
        logger.info("evaluation report written to %s\n%s", self.output_dir, format_metrics_table(self.metrics))
