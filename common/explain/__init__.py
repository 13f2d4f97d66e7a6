"""Explanations you can measure: Grad-CAM per finding and its localisation against boxes (pointing game, IoU)."""

from __future__ import annotations

from common.explain.gradcam import TARGET_LAYERS, FindingGradCAM, max_normalise, target_layer
from common.explain.pointing_game import (
    DEFAULT_IOU_THRESHOLD,
    DEFAULT_TOLERANCE_PX,
    REFERENCE_SIZE,
    BoxScore,
    map_box,
    pointing_hit,
    random_hit_probability,
    score_box,
    summarise_scores,
    threshold_iou,
)

__all__ = [
    "TARGET_LAYERS",
    "FindingGradCAM",
    "max_normalise",
    "target_layer",
    "DEFAULT_IOU_THRESHOLD",
    "DEFAULT_TOLERANCE_PX",
    "REFERENCE_SIZE",
    "BoxScore",
    "map_box",
    "pointing_hit",
    "random_hit_probability",
    "score_box",
    "summarise_scores",
    "threshold_iou",
]
