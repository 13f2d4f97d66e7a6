"""Single-label classification in MONAI's engines: the key metric, the evaluation report and the inference CSV.

All three read the evaluator's post-processed ``pred``: one probability per class (see
:mod:`common.transforms.single_label`), and its ``label``: the class index (a 0-d ``long`` for multi-class, a
``(1,)`` float for a one-logit binary head; both read as the index).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine
from ignite.metrics import Metric
from monai.utils import evenly_divisible_all_gather

from common.engines.collect import PredictionCollector
from common.errors import DataError
from common.io import atomic_write_text
from common.metrics.single_label import (
    compute_single_label_metrics,
    one_vs_rest_auc,
    predicted_classes,
)
from common.metrics.single_label_report import format_single_label_table, write_single_label_report

__all__ = ["SingleLabelAUC", "SingleLabelReportHandler", "ClassPredictionCSVWriter"]

logger = logging.getLogger(__name__)


def _rows(value: Any) -> torch.Tensor:
    tensor = torch.stack(list(value)) if isinstance(value, list | tuple) else value
    return tensor.detach().float().cpu().reshape(tensor.shape[0], -1)


class SingleLabelAUC(Metric):
    """Macro one-vs-rest ROC AUC (binary: AUC of class 1) as an ignite metric, for ``key_val_metric``.

    Classes absent from a small validation split are left out of the mean (and logged); a split where no class
    has both positive and negative images raises.

    Args:
        output_transform: maps ``engine.state.output`` to ``(y_pred, y)``, e.g.
            ``monai.handlers.from_engine(["pred", "label"])``.

    Example:
        >>> metric = SingleLabelAUC()
        >>> metric.update((torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([[0.0], [1.0]])))
        >>> metric.compute()
        1.0
    """

    def __init__(self, output_transform: Callable[[Any], Any] = lambda x: x) -> None:
        self._preds: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        super().__init__(output_transform=output_transform)

    def reset(self) -> None:
        self._preds, self._labels = [], []

    def update(self, output: Sequence[Any]) -> None:
        y_pred, y = output
        self._preds.append(_rows(y_pred).numpy())
        self._labels.append(_rows(y)[:, 0].numpy())

    def compute(self) -> float:
        width = self._preds[0].shape[1] if self._preds else 0
        if idist.get_world_size() > 1:
            width = int(idist.all_reduce(torch.tensor(width), op="MAX"))
        preds = np.concatenate(self._preds) if self._preds else np.zeros((0, width), dtype=np.float32)
        labels = np.concatenate(self._labels) if self._labels else np.zeros(0, dtype=np.float32)
        if idist.get_world_size() > 1:
            labels = evenly_divisible_all_gather(torch.from_numpy(labels), concat=True).numpy()
            preds = evenly_divisible_all_gather(torch.from_numpy(preds), concat=True).numpy()
        if preds.shape[0] == 0:
            raise DataError("SingleLabelAUC: no predictions were collected (empty validation split?)")
        aucs = one_vs_rest_auc(labels, preds)
        if preds.shape[1] == 2:
            if np.isnan(aucs[1]):
                raise DataError("validation split holds one class only, so AUC is undefined; use a larger "
                                "validation split (--val-fraction)")
            return float(aucs[1])
        defined = aucs[~np.isnan(aucs)]
        if defined.size == 0:
            raise DataError("validation split holds one class only, so AUC is undefined; use a larger validation "
                            "split (--val-fraction)")
        if defined.size < aucs.size:
            logger.warning("AUC undefined for %d of %d classes (absent from this split): left out of the macro AUC",
                           aucs.size - defined.size, aucs.size)
        return float(defined.mean())


class SingleLabelReportHandler(PredictionCollector):
    """At the end of an evaluation run, compute the single-label metrics and write the report folder.

    Args:
        output_dir: report folder (metrics.json, report.md, roc_curves.png, confusion_matrix.png,
            predictions.npz), replaced as a whole once everything is written.
        class_names: names of the classes, in output order.
        n_boot: bootstrap resamples for the intervals.
        seed: bootstrap seed.
        title: report heading.
        plots: write the ROC and confusion-matrix PNGs (``False``: a federated round's report, see
            :func:`~common.metrics.single_label_report.write_single_label_report`).
    """

    def __init__(self, output_dir: str | os.PathLike, class_names: Sequence[str], n_boot: int = 1000, seed: int = 0,
                 title: str = "Evaluation", plots: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.output_dir = Path(output_dir)
        self.class_names = list(class_names)
        self.n_boot, self.seed, self.title, self.plots = int(n_boot), int(seed), title, bool(plots)
        self.metrics: dict | None = None

    def completed(self, engine: Engine) -> None:
        y_true, y_prob = self.y_true, self.y_prob
        if y_true.shape[0] != y_prob.shape[0]:
            raise DataError(f"evaluation needs a label for every image: {y_prob.shape[0]} predictions, "
                            f"{y_true.shape[0]} labels")
        labels = y_true[:, 0]
        self.metrics = compute_single_label_metrics(labels, y_prob, self.class_names, n_boot=self.n_boot,
                                                    seed=self.seed, patient_ids=self.patient_ids)  # fmt: skip
        write_single_label_report(self.metrics, self.output_dir, labels, y_prob, title=self.title, plots=self.plots)
        logger.info("evaluation report written to %s\n%s", self.output_dir, format_single_label_table(self.metrics))


class ClassPredictionCSVWriter(PredictionCollector):
    """Write one CSV row per image: the file, one probability column per class, the predicted class (atomically).

    Args:
        output_file: destination CSV, replaced whole once the run completes.
        class_names: probability columns, in output order; ``predicted`` holds one of them.
        relative_to: when given, file names are written relative to this folder.

    Example:
        >>> writer = ClassPredictionCSVWriter("predictions/predictions.csv", ["nv", "mel"])  # doctest: +SKIP
    """

    def __init__(self, output_file: str | os.PathLike, class_names: Sequence[str],
                 relative_to: str | None = None) -> None:  # fmt: skip
        super().__init__()
        self.output_file = Path(output_file)
        self.class_names = list(class_names)
        self.relative_to = relative_to

    def completed(self, engine: Engine) -> None:
        probs = self.y_prob
        if probs.size and probs.shape[1] != len(self.class_names):
            raise DataError(f"network gave {probs.shape[1]} probabilities but there are {len(self.class_names)} "
                            f"class names {self.class_names}")
        predicted = predicted_classes(probs) if probs.size else np.zeros(0, dtype=int)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["image", *self.class_names, "predicted"])
        for name, row, label in zip(self.filenames, probs, predicted, strict=True):
            shown = os.path.relpath(name, self.relative_to) if self.relative_to and name else name
            writer.writerow([shown, *(f"{p:.6f}" for p in row), self.class_names[label]])
        atomic_write_text(self.output_file, buffer.getvalue())
        logger.info("wrote %d predictions to %s", len(self.filenames), self.output_file)
