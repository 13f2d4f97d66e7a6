"""Mean ROC AUC over findings as an ignite metric, for a MONAI evaluator's ``key_val_metric``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.metrics import Metric
from monai.utils import evenly_divisible_all_gather

from common.errors import DataError
from common.metrics import per_class_auc

__all__ = ["MultilabelAUC"]

logger = logging.getLogger(__name__)


class MultilabelAUC(Metric):
    """Mean of the per-class ROC AUCs (scikit-learn) over classes with both label values present.

    NaN labels are masked per class. Unlike ``monai.handlers.ROCAUC`` it tolerates classes that a small
    validation split lacks (they are skipped and logged) and never averages in NaN.

    Args:
        output_transform: maps ``engine.state.output`` to ``(y_pred, y)``, e.g.
            ``monai.handlers.from_engine(["pred", "label"])``.
    """

    def __init__(self, output_transform: Callable[[Any], Any] = lambda x: x) -> None:
        self._preds: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        super().__init__(output_transform=output_transform)

    def reset(self) -> None:
        self._preds, self._labels = [], []

    def update(self, output: Sequence[Any]) -> None:
        y_pred, y = output
        preds = torch.stack(list(y_pred)) if isinstance(y_pred, list | tuple) else y_pred
        labels = torch.stack(list(y)) if isinstance(y, list | tuple) else y
        self._preds.append(preds.detach().float().cpu().reshape(preds.shape[0], -1).numpy())
        self._labels.append(labels.detach().float().cpu().reshape(labels.shape[0], -1).numpy())

    def compute(self) -> float:
        width = self._preds[0].shape[1] if self._preds else 0
        if idist.get_world_size() > 1:
            # A rank may hold no image of a small split: agree on the class count, then gather every shard
            # (AUC needs all images) before deciding whether anything was collected.
            width = int(idist.all_reduce(torch.tensor(width), op="MAX"))
        empty = np.zeros((0, width), dtype=np.float32)
        labels = np.concatenate(self._labels) if self._labels else empty
        preds = np.concatenate(self._preds) if self._preds else empty
        if idist.get_world_size() > 1:
            labels = evenly_divisible_all_gather(torch.from_numpy(labels), concat=True).numpy()
            preds = evenly_divisible_all_gather(torch.from_numpy(preds), concat=True).numpy()
        if preds.shape[0] == 0:
            raise DataError("MultilabelAUC: no predictions were collected (empty validation split?)")
        aucs = per_class_auc(labels, preds)
        defined = aucs[~np.isnan(aucs)]
        if defined.size == 0:
            raise DataError(
                "validation split has no class with both positive and negative images, so AUC is undefined; "
                "use a larger validation split (--val-fraction)"
            )
        if defined.size < aucs.size:
            logger.warning("AUC undefined for %d of %d classes in this split (one label value only)",
                           aucs.size - defined.size, aucs.size)
        return float(defined.mean())
