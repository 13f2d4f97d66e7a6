"""MONAI Label inference task for a medxfer bundle: classification JSON or a segmentation mask image.

Classification answers JSON only (no image): every class name as the bundle spells it, its sigmoid probability,
the decision threshold (the evaluation's validation-chosen one when ``eval/metrics.json`` of this model exists,
else 0.5, with ``threshold_source`` saying which) and the positive set. Segmentation answers a uint8 PNG mask with
the input's exact height and width, codes ``1..K`` as in ``labels`` (0, BCSS's "don't care", is never predicted):
pixel for pixel what the bundle's own ``inference.json`` writes.

A bundle without ``models/model.pt`` is listed by ``/info`` (``"trained": false``) and ``/infer`` on it answers
409 with one line; an unreadable image answers 400 naming the file.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Any

import numpy as np
from fastapi import HTTPException
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from PIL import Image

from common.errors import MedxferError, user_message
from common.io import atomic_save
from common.label.bundles import CLASSIFICATION, LabelBundle, NotTrainedError, Predictor

__all__ = ["BundleInferTask", "classification_result"]

logger = logging.getLogger(__name__)


def classification_result(probabilities: np.ndarray, class_names: list[str], thresholds: list[float],
                          threshold_source: str) -> dict[str, Any]:
    """The JSON a classification ``/infer`` returns.

    Example:
        >>> classification_result(np.array([0.7, 0.2]), ["Effusion", "Mass"], [0.5, 0.5], "0.5")["positive"]
        ['Effusion']
    """
    classes = [
        {"name": name, "probability": float(p), "threshold": float(t), "positive": bool(p >= t)}
        for name, p, t in zip(class_names, probabilities.tolist(), thresholds, strict=True)
    ]
    return {
        "classes": classes,
        "positive": [c["name"] for c in classes if c["positive"]],
        "threshold_source": threshold_source,
    }


class BundleInferTask(InferTask):
    """``/infer/<bundle name>`` through the bundle's own ``inference.json``.

    Args:
        bundle: the served bundle (configs, workspace, kind).
        predictor: share one with the active-learning strategies (one loaded network per bundle).
    """

    def __init__(self, bundle: LabelBundle, predictor: Predictor | None = None) -> None:
        self.bundle = bundle
        self.predictor = predictor or Predictor(bundle)
        classification = bundle.kind == CLASSIFICATION
        names = bundle.class_names()
        labels: list[str] | dict[str, int] = names if classification else {n: i for i, n in enumerate(names, 1)}
        super().__init__(
            type=InferType.CLASSIFICATION if classification else InferType.SEGMENTATION,
            labels=labels,
            dimension=2,
            description=str(bundle.metadata.get("name") or bundle.name),
        )

    def info(self) -> dict[str, Any]:
        """MONAI Label's model info plus whether a model is trained and its version (sha256 of model.pt)."""
        out = super().info()
        out.update({"trained": self.bundle.trained, "model_version": self.bundle.version(), "bundle": self.bundle.name})
        return out

    def is_valid(self) -> bool:
        """Always listed, trained or not (an untrained bundle is trainable)."""
        return True

    def get_path(self, validate: bool = True) -> str | None:
        """``models/model.pt`` (for MONAI Label's ``/model`` endpoints); ``None`` when not trained."""
        return str(self.bundle.model_path) if self.bundle.trained or not validate else None

    def __call__(self, request: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        image = request.get("image")
        if not isinstance(image, str | os.PathLike):
            raise HTTPException(status_code=400, detail=f"{self.bundle.name}: /infer needs an image file or id")
        start = time.perf_counter()
        try:
            if self.bundle.kind == CLASSIFICATION:
                probabilities, names = self.predictor.scores(image)
                thresholds, source = self.bundle.thresholds(names)
                result = classification_result(probabilities, names, thresholds, source)
                file = None
            else:
                labels, names = self.predictor.labels(image)
                file = self._write_mask(labels)
                result = {"labels": {n: i for i, n in enumerate(names, 1)}, "shape": list(labels.shape)}
        except NotTrainedError as err:
            raise HTTPException(status_code=409, detail=str(err)) from err
        except (MedxferError, OSError, RuntimeError, ValueError) as err:  # MONAI wraps config errors in RuntimeError
            detail = f"{self.bundle.name} cannot run on {os.path.basename(str(image))}: {user_message(err)}"
            raise HTTPException(status_code=400, detail=detail.splitlines()[0]) from err
        result.update({
            "model": self.bundle.name,
            "model_version": self.predictor.version,
            "latencies": {"total": round(time.perf_counter() - start, 4)},
        })
        return file, result

    @staticmethod
    def _write_mask(labels: np.ndarray) -> str:
        """Write ``labels`` (H, W) as a uint8 PNG in the temp folder (MONAI Label deletes it once sent)."""
        handle, name = tempfile.mkstemp(suffix=".png", prefix="medxfer_mask_")
        os.close(handle)
        atomic_save(name, lambda tmp: Image.fromarray(labels.astype(np.uint8)).save(tmp, format="PNG"))
        return name
