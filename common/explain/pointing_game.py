"""Localisation of an explanation map against boxes: the pointing game, IoU and a random-map baseline.

Pointing game (Zhang et al. 2016, "Top-down Neural Attention by Excitation Backprop", ECCV; the evaluation of
Grad-CAM's paper too): a box is a **hit** when the maximum of the finding's map falls inside the box enlarged by a
tolerance on every side. The usual tolerance is 15 px at the scale of the original image; here it is
``tolerance_px`` (default :data:`DEFAULT_TOLERANCE_PX` = 15) per :data:`REFERENCE_SIZE` (1024) px of image side, so
it scales with the grid: 15 px on NIH's 1024 px images, 0.94 px on a 64 px map. A map with no positive value
(all zero: the finding's gradient never reached a positive evidence) has no maximum to point at and counts as a miss.

Coordinates: a box is ``x, y, w, h`` in the pixel grid of the stored image (see
:mod:`common.data.chestxray14_boxes`); :func:`map_box` rescales it to the map's grid. Pixel ``(r, c)`` spans
``[c, c + 1) x [r, r + 1)`` and is located by its centre ``(c + 0.5, r + 0.5)``. When several pixels share the
maximum, the first in row-major order is taken (``numpy.argmax``).

Random baseline: the expected hit rate of a point drawn uniformly over the image, i.e. the area of the enlarged box
(clipped to the image) divided by the image area, averaged over the boxes.

IoU: the map thresholded at :data:`DEFAULT_IOU_THRESHOLD` (0.5) of its maximum against the box (pixel centres
inside the box, no tolerance).

CI: percentile bootstrap over boxes (``numpy.random.default_rng(seed)``, ``n_boot`` resamples).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.errors import ConfigError

__all__ = [
    "DEFAULT_TOLERANCE_PX",
    "REFERENCE_SIZE",
    "DEFAULT_IOU_THRESHOLD",
    "BoxScore",
    "map_box",
    "pointing_hit",
    "random_hit_probability",
    "threshold_iou",
    "score_box",
    "summarise_scores",
]

DEFAULT_TOLERANCE_PX = 15.0
REFERENCE_SIZE = 1024
DEFAULT_IOU_THRESHOLD = 0.5

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class BoxScore:
    """The pointing-game hit, IoU and random-point hit probability of one (image, box)."""

    finding: str
    hit: bool
    iou: float
    baseline: float


def map_box(box: Mapping[str, float], image_shape: Sequence[int], map_shape: Sequence[int]) -> Box:
    """Rescale a stored-image box ``{"x", "y", "w", "h"}`` to a map grid; shapes are ``(H, W)``."""
    sy, sx = map_shape[0] / image_shape[0], map_shape[1] / image_shape[1]
    return float(box["x"]) * sx, float(box["y"]) * sy, float(box["w"]) * sx, float(box["h"]) * sy


def _tolerance(shape: Sequence[int], tolerance_px: float) -> tuple[float, float]:
    if tolerance_px < 0:
        raise ConfigError(f"tolerance_px must be >= 0, got {tolerance_px}")
    return tolerance_px * shape[1] / REFERENCE_SIZE, tolerance_px * shape[0] / REFERENCE_SIZE


def pointing_hit(cam_map: np.ndarray, box: Box, tolerance_px: float = DEFAULT_TOLERANCE_PX) -> bool:
    """Whether the maximum of the 2-D ``cam_map`` lies in ``box`` (map grid) enlarged by the scaled tolerance."""
    if not np.any(cam_map > 0):
        return False
    row, col = np.unravel_index(int(np.argmax(cam_map)), cam_map.shape)
    tx, ty = _tolerance(cam_map.shape, tolerance_px)
    x, y, w, h = box
    return bool(x - tx <= col + 0.5 <= x + w + tx and y - ty <= row + 0.5 <= y + h + ty)


def random_hit_probability(box: Box, shape: Sequence[int], tolerance_px: float = DEFAULT_TOLERANCE_PX) -> float:
    """Probability that a uniformly random point of a ``shape`` = ``(H, W)`` image hits the enlarged ``box``."""
    tx, ty = _tolerance(shape, tolerance_px)
    x, y, w, h = box
    width = max(0.0, min(shape[1], x + w + tx) - max(0.0, x - tx))
    height = max(0.0, min(shape[0], y + h + ty) - max(0.0, y - ty))
    return width * height / (shape[0] * shape[1])


def threshold_iou(cam_map: np.ndarray, box: Box, threshold: float = DEFAULT_IOU_THRESHOLD) -> float:
    """IoU of ``cam_map >= threshold * max`` with the pixels whose centres lie in ``box`` (0 for an all-zero map)."""
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"IoU threshold must lie in (0, 1], got {threshold}")
    peak = float(np.max(cam_map))
    region = cam_map >= threshold * peak if peak > 0 else np.zeros(cam_map.shape, bool)
    cols, rows = np.arange(cam_map.shape[1]) + 0.5, np.arange(cam_map.shape[0]) + 0.5
    x, y, w, h = box
    inside = ((rows >= y) & (rows <= y + h))[:, None] & ((cols >= x) & (cols <= x + w))[None, :]
    union = np.count_nonzero(region | inside)
    return float(np.count_nonzero(region & inside) / union) if union else 0.0


def score_box(cam_map: np.ndarray, finding: str, box: Box, tolerance_px: float = DEFAULT_TOLERANCE_PX,
              iou_threshold: float = DEFAULT_IOU_THRESHOLD) -> BoxScore:  # fmt: skip
    """Hit, IoU and random baseline of one box (map grid) on its finding's 2-D map."""
    return BoxScore(finding, pointing_hit(cam_map, box, tolerance_px), threshold_iou(cam_map, box, iou_threshold),
                    random_hit_probability(box, cam_map.shape, tolerance_px))  # fmt: skip


def _bootstrap_ci(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> list[float]:
    draws = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[draws].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def summarise_scores(scores: Sequence[BoxScore], n_boot: int = 1000, seed: int = 0,
                     tolerance_px: float = DEFAULT_TOLERANCE_PX,
                     iou_threshold: float = DEFAULT_IOU_THRESHOLD) -> dict[str, Any]:  # fmt: skip
    """Per finding (and ``"all"``): n boxes, hit rate with a 95% bootstrap CI over boxes, random baseline, mean IoU.

    Returns a JSON-able dict ``{"settings": {...}, "findings": {name: {...}}, "all": {...}}``.
    """
    rng = np.random.default_rng(seed)
    groups: dict[str, list[BoxScore]] = {}
    for score in scores:
        groups.setdefault(score.finding, []).append(score)

    def summary(group: Sequence[BoxScore]) -> dict[str, Any]:
        hits = np.array([s.hit for s in group], dtype=float)
        ious = np.array([s.iou for s in group], dtype=float)
        return {
            "n_boxes": len(group),
            "hit_rate": float(hits.mean()),
            "hit_rate_ci95": _bootstrap_ci(hits, n_boot, rng),
            "random_baseline": float(np.mean([s.baseline for s in group])),
            "mean_iou": float(ious.mean()),
            "mean_iou_ci95": _bootstrap_ci(ious, n_boot, rng),
        }

    return {
        "settings": {"tolerance_px": tolerance_px, "reference_size": REFERENCE_SIZE, "iou_threshold": iou_threshold,
                     "n_boot": n_boot, "seed": seed, "ci": "percentile bootstrap over boxes"},  # fmt: skip
        "findings": {name: summary(group) for name, group in sorted(groups.items())},
        "all": summary(list(scores)) if scores else {"n_boxes": 0},
    }
