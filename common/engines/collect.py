"""Ignite handlers that gather per-image predictions from a MONAI evaluator and act on them."""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from common.errors import DataError
from common.io import atomic_write_text

__all__ = ["PredictionCollector", "ProbabilityCSVWriter", "batch_sources", "item_filename", "item_meta"]

logger = logging.getLogger(__name__)


def item_meta(item: dict[str, Any], key: str = "image", source: Any = None) -> dict[str, Any]:
    """The metadata of a decollated item's ``key``: its MetaTensor meta or ``<key>_meta_dict``, else the same of
    ``source`` (the item's entry of the decollated input batch, which keeps the meta when the network was handed
    plain tensors by :class:`common.engines.batch.PlainTensorBatch`); ``{}`` when neither has any."""
    for holder in (item, source):
        if isinstance(holder, dict):
            meta = getattr(holder.get(key), "meta", None) or holder.get(f"{key}_meta_dict")
            if meta:
                return dict(meta)
    return {}


def item_filename(item: dict[str, Any], key: str = "image", source: Any = None) -> str:
    """Return the source file of a decollated item (from its meta or ``source``'s, see :func:`item_meta`), or ''."""
    return str(item_meta(item, key, source).get("filename_or_obj", ""))


def batch_sources(engine: Engine, items: list[Any]) -> list[Any]:
    """The decollated input batch entry of each output item (``engine.state.batch``), or ``None`` each when the
    batch is not a decollated list of the same length."""
    batch = engine.state.batch if isinstance(engine.state.batch, list) else []
    return list(batch) if len(batch) == len(items) else [None] * len(items)


def _as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


class PredictionCollector:
    """Collect ``pred`` (probabilities, after postprocessing) and ``label`` of every image of a run.

    Attach it to a MONAI ``SupervisedEvaluator`` (via its ``val_handlers``). It resets when the run
    starts, so the arrays always hold exactly the last run's images.

    Attributes:
        y_prob: ``(N, C)`` probabilities.  y_true: ``(N, C)`` labels (NaN unknown), empty if unlabelled.
        filenames: the N source files.
    """

    def __init__(self, pred_key: str = "pred", label_key: str = "label", image_key: str = "image") -> None:
        self.pred_key, self.label_key, self.image_key = pred_key, label_key, image_key
        self._probs: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self.filenames: list[str] = []
        self._patients: list[object] = []

    def attach(self, engine: Engine) -> None:
        """Register with ``engine``: reset at start, collect every iteration, ``completed`` at the end."""
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def reset(self, engine: Engine | None = None) -> None:
        """Forget the previous run."""
        self._probs, self._labels, self.filenames, self._patients = [], [], [], []

    def collect(self, engine: Engine) -> None:
        """Take the decollated items of the current iteration from ``engine.state.output``."""
        items = engine.state.output
        if isinstance(items, dict):
            raise DataError("PredictionCollector needs decollated output: give the evaluator a postprocessing")
        # MONAI's evaluator output holds image, label and pred only; the datalist's other keys (patient_id)
        # stay in the decollated batch, item for item.
        for item, source in zip(items, batch_sources(engine, items), strict=True):
            self._probs.append(_as_numpy(item[self.pred_key]).reshape(-1))
            if self.label_key in item and item[self.label_key] is not None:
                self._labels.append(_as_numpy(item[self.label_key]).reshape(-1))
            self.filenames.append(item_filename(item, self.image_key, source))
            holder = source if isinstance(source, dict) else item
            self._patients.append(holder.get("patient_id"))

    def completed(self, engine: Engine) -> None:
        """Hook for subclasses; the plain collector only keeps the arrays."""

    @property
    def patient_ids(self) -> list[str] | None:
        """Each image's ``patient_id`` (the datalist's), or ``None`` unless every image carries one."""
        ids = [str(p) for p in self._patients if p is not None and str(p).strip()]
        return ids if ids and len(ids) == len(self._patients) else None

    @property
    def y_prob(self) -> np.ndarray:
        return np.stack(self._probs) if self._probs else np.zeros((0, 0), dtype=np.float32)

    @property
    def y_true(self) -> np.ndarray:
        return np.stack(self._labels) if self._labels else np.zeros((0, 0), dtype=np.float32)


class ProbabilityCSVWriter(PredictionCollector):
    """Write one CSV row per image: the file, then one probability column per class (atomically).

    Args:
        output_file: destination CSV; written once the run completes, replacing any earlier file whole.
        class_names: column names, in the network's output order.
        relative_to: when given, file names are written relative to this folder.
    """

    def __init__(self, output_file: str | os.PathLike, class_names: Sequence[str], relative_to: str | None = None):
        super().__init__()
        self.output_file = Path(output_file)
        self.class_names = list(class_names)
        self.relative_to = relative_to

    def completed(self, engine: Engine) -> None:
        probs = self.y_prob
        if probs.size and probs.shape[1] != len(self.class_names):
            raise DataError(f"network gave {probs.shape[1]} outputs but {len(self.class_names)} class names")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["image", *self.class_names])
        for name, row in zip(self.filenames, probs, strict=True):
            shown = os.path.relpath(name, self.relative_to) if self.relative_to and name else name
            writer.writerow([shown, *(f"{p:.6f}" for p in row)])
        atomic_write_text(self.output_file, buffer.getvalue())
        logger.info("wrote %d predictions to %s", len(self.filenames), self.output_file)
