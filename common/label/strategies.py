"""Active learning for ``/activelearning/<strategy>``: which image to annotate next for a bundle.

``uncertainty`` scores every candidate image (not yet labelled for the bundle, see
``MedxferDatastore.candidates``) with the served model and proposes the most uncertain one:

- classification: the mean over classes of the binary entropy of the sigmoid outputs,
  ``mean_c [-p_c ln p_c - (1 - p_c) ln(1 - p_c)]`` (nats; ``ln 2`` at p = 0.5 for every class);
- segmentation: the mean over pixels of the Shannon entropy of the softmax, ``mean_xy [-sum_k p_k ln p_k]`` (nats).

Scores are cached per model version (sha256 of ``models/model.pt``) in ``<workspace>/<bundle>/uncertainty.json``,
so each image is scored once per trained model; a new model starts a new cache. ``random`` proposes a candidate
uniformly at random. Both take the request parameter ``model`` (the bundle); it may be left out when the server
serves one bundle.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import HTTPException
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from common.io import atomic_write_json
from common.label.bundles import CLASSIFICATION, LabelBundle, NotTrainedError, Predictor

__all__ = ["Random", "Uncertainty", "binary_entropy", "uncertainty_score"]

logger = logging.getLogger(__name__)
_EPS = 1e-12


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Elementwise ``-p ln p - (1 - p) ln(1 - p)`` (nats), 0 at p = 0 or 1."""
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return -(p * np.log(p) + (1 - p) * np.log1p(-p))


def uncertainty_score(scores: np.ndarray, kind: str) -> float:
    """The uncertainty of one image from its post-processed output (see the module docstring).

    Args:
        scores: ``(C,)`` sigmoid probabilities (classification) or ``(K, H, W)`` softmax maps (segmentation).
        kind: ``"classification"`` or ``"segmentation"``.
    """
    if kind == CLASSIFICATION:
        return float(binary_entropy(scores).mean())
    p = np.clip(np.asarray(scores, dtype=np.float64), _EPS, 1.0)
    return float((-(p * np.log(p)).sum(axis=0)).mean())


def _pick_bundle(request: Mapping[str, Any], bundles: Mapping[str, LabelBundle]) -> LabelBundle:
    name = request.get("model")
    if name is None and len(bundles) == 1:
        return next(iter(bundles.values()))
    if name not in bundles:
        raise HTTPException(status_code=400, detail=f"active learning needs params {{\"model\": <bundle>}}, one of: "
                                                    f"{', '.join(bundles)}; got {name!r}")  # fmt: skip
    return bundles[name]


def _candidates(datastore: Datastore, bundle: LabelBundle) -> list[str]:
    candidates = getattr(datastore, "candidates", None)
    return list(candidates(bundle)) if candidates is not None else list(datastore.get_unlabeled_images())


class Random(Strategy):
    """A candidate image for the requested bundle, uniformly at random."""

    def __init__(self, bundles: Mapping[str, LabelBundle], seed: int | None = None) -> None:
        super().__init__("Random unlabelled image for the requested model (params: model)")
        self.bundles = bundles
        self._random = random.Random(seed)

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any] | None:
        bundle = _pick_bundle(request, self.bundles)
        images = sorted(_candidates(datastore, bundle))
        if not images:
            return None
        return {"id": self._random.choice(images), "model": bundle.name, "candidates": len(images)}


class Uncertainty(Strategy):
    """The candidate image the served model is least sure about (scores cached per model version).

    Args:
        bundles: the served bundles by name.
        predictors: their predictors (shared with the infer tasks: one network in memory per bundle).
    """

    def __init__(self, bundles: Mapping[str, LabelBundle], predictors: Mapping[str, Predictor]) -> None:
        super().__init__("Most uncertain unlabelled image: mean entropy of the model's outputs (params: model)")
        self.bundles, self.predictors = bundles, predictors
        self._lock = threading.Lock()

    @staticmethod
    def _cache_file(bundle: LabelBundle) -> Path:
        return bundle.root / "uncertainty.json"

    def _read_cache(self, bundle: LabelBundle, version: str) -> dict[str, float]:
        file = self._cache_file(bundle)
        try:
            data = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return dict(data.get("scores", {})) if data.get("model_version") == version else {}

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any] | None:
        bundle = _pick_bundle(request, self.bundles)
        if not bundle.trained:
            raise HTTPException(status_code=409, detail=f"{bundle.name} has no trained model yet, so no uncertainty: "
                                                        f"use /activelearning/random, label, then /train/{bundle.name}")
        images = sorted(_candidates(datastore, bundle))
        if not images:
            return None
        with self._lock:
            version = str(bundle.version())
            cache = self._read_cache(bundle, version)
            todo = [image for image in images if image not in cache]
            for image in todo:
                try:
                    scores, _ = self.predictors[bundle.name].scores(datastore.get_image_uri(image))
                except NotTrainedError as err:
                    raise HTTPException(status_code=409, detail=str(err)) from err
                cache[image] = uncertainty_score(scores, bundle.kind)
            if todo:
                atomic_write_json(self._cache_file(bundle), {"model_version": version, "scores": cache})
        best = max(images, key=lambda image: (cache[image], image))
        logger.info("uncertainty for %s: %s (%.4f nats) among %d candidates, %d newly scored", bundle.name, best,
                    cache[best], len(images), len(todo))
        return {"id": best, "score": cache[best], "model": bundle.name, "model_version": version,
                "candidates": len(images)}
