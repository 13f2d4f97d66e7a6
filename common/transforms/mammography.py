"""Mammography helpers of the artifact mask: laterality, left-right flip and pectoral-muscle removal.

Conventions: images are stored as displayed, so a left breast (``"L"``) has its chest wall on the left of
the image and a right breast (``"R"``) on the right. Laterality comes from an explicit value, else the DICOM
``ImageLaterality``/``Laterality`` in the MetaTensor meta (keyword keys, or the hex keys of MONAI's
PydicomReader with ``prune_metadata=False``), else from the half of the masked image holding more intensity
(the chest wall is the thick side). The pectoral muscle (MLO views only) is the largest bright component
touching the upper chest-wall corner after an Otsu threshold of the breast pixels in the upper chest-wall
quarter of the breast, filled to its convex hull; a candidate covering more than half the breast (dense
breast, no muscle visible) is discarded with a warning. This is a heuristic for screening-style MLO films,
not a segmentation model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
import torch
from skimage.filters import threshold_otsu

from common.errors import DataError
from common.transforms.morphology import fill_region, largest_component, odd_kernel

__all__ = [
    "find_pectoral_muscle",
    "resolve_laterality",
    "is_mlo_view",
    "mirror_affine",
    "chest_wall_pectoral",
    "LATERALITY_META_KEYS",
    "VIEW_META_KEYS",
]

logger = logging.getLogger(__name__)

LATERALITY_META_KEYS = ("ImageLaterality", "Laterality", "00200062", "00200060", "0020|0062", "0020|0060")
VIEW_META_KEYS = ("ViewPosition", "00185101", "0018|5101")
_LATERALITY = {"l": "L", "left": "L", "r": "R", "right": "R"}


def find_pectoral_muscle(grey: np.ndarray, breast: np.ndarray, max_fraction: float = 0.5) -> np.ndarray:
    """Boolean mask of the pectoral muscle of an MLO mammogram whose chest wall is on the LEFT.

    Args:
        grey: ``(H, W)`` image.
        breast: boolean breast mask from :func:`~common.transforms.artifact_mask.find_anatomy_mask`.
        max_fraction: a candidate larger than this fraction of the breast is rejected (all-False result).

    Returns:
        The muscle mask (inside ``breast``); all False when no muscle is found.

    Example:
        >>> grey = np.zeros((80, 60), np.float32); grey[:, :40] = 0.4; grey[:20, :15] = 0.9
        >>> muscle = find_pectoral_muscle(grey, grey > 0)
        >>> bool(muscle[5, 5]), bool(muscle[50, 20])
        (True, False)
    """
    none = np.zeros(breast.shape, dtype=bool)
    rows, cols = np.flatnonzero(breast.any(axis=1)), np.flatnonzero(breast.any(axis=0))
    if rows.size < 2 or cols.size < 2:
        return none
    top, height, width = int(rows[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] + 1)
    roi = none.copy()
    roi[top : top + max(height // 2, 1), : max(width // 2, 1)] = True
    values = grey[breast & roi]
    if values.size < 2 or float(values.max()) <= float(values.min()):
        return none
    # float64: scikit-image's histogram edges follow a float32 input's dtype under NumPy 2 (see find_anatomy_mask)
    bright = (breast & roi & (grey > threshold_otsu(values.astype(np.float64)))).astype(np.uint8)
    bright = cv2.morphologyEx(bright, cv2.MORPH_OPEN, odd_kernel(grey.shape, 0.01))
    corner = max(3, int(0.05 * min(grey.shape)))
    muscle = fill_region(largest_component(bright, seed=(slice(top, top + corner), slice(0, corner))), hull=True)
    muscle &= breast
    if muscle.sum() > max_fraction * breast.sum():
        logger.warning(
            "pectoral candidate covers %.0f%% of the breast (> %.0f%%); kept the breast unchanged",
            100 * muscle.sum() / breast.sum(),
            100 * max_fraction,
        )
        return none
    return muscle



def _given(value: Any) -> str | None:
    """``value`` as a stripped string; None, "" and NaN (an empty CSV cell) count as missing."""
    if value is None or (isinstance(value, float) and value != value) or not str(value).strip():
        return None
    return str(value).strip()


def _meta_value(meta: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = meta.get(key)
        if isinstance(value, Mapping):  # MONAI's PydicomReader stores {"vr": ..., "Value": [...]}
            value = value.get("Value")
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if _given(value) is not None:
            return _given(value)
    return None


def resolve_laterality(masked: np.ndarray, meta: Mapping[str, Any], given: Any = None) -> tuple[str, str]:
    """Side of the breast, ``"L"`` or ``"R"``, and where it came from (``"argument"``, ``"meta"``, ``"intensity"``).

    Args:
        masked: ``(H, W)`` image with everything but the breast zeroed.
        meta: image meta; DICOM ``"B"``/``"U"`` values fall through to the intensity rule.
        given: explicit ``"L"``/``"R"``/``"left"``/``"right"``; None, "" and NaN count as not given.

    Raises:
        DataError: ``given`` is not one of the accepted values.

    Example:
        >>> masked = np.zeros((4, 6)); masked[:, 4:] = 1.0
        >>> resolve_laterality(masked, {}), resolve_laterality(masked, {"00200062": {"vr": "CS", "Value": ["L"]}})
        (('R', 'intensity'), ('L', 'meta'))
    """
    explicit = _given(given)
    if explicit is not None:
        if explicit.lower() not in _LATERALITY:
            raise DataError(f"unknown laterality {given!r}; expected one of: L, R, left, right")
        return _LATERALITY[explicit.lower()], "argument"
    from_meta = _meta_value(meta, LATERALITY_META_KEYS)
    if from_meta is not None and from_meta.lower() in _LATERALITY:
        return _LATERALITY[from_meta.lower()], "meta"
    half = masked.shape[1] // 2
    return ("L" if masked[:, :half].sum() >= masked[:, masked.shape[1] - half :].sum() else "R"), "intensity"


def is_mlo_view(meta: Mapping[str, Any], view: Any = None) -> bool:
    """Whether the view (``view``, else the DICOM ``ViewPosition`` in ``meta``) is an MLO view.

    Example:
        >>> is_mlo_view({"ViewPosition": "MLO"}), is_mlo_view({"ViewPosition": "MLO"}, view="CC"), is_mlo_view({})
        (True, False, False)
    """
    value = _given(view) or _meta_value(meta, VIEW_META_KEYS)
    if value is None:
        logger.debug("view position unknown; pectoral muscle kept")
    return value is not None and "MLO" in str(value).upper()


def mirror_affine(affine: torch.Tensor, width: int) -> torch.Tensor:
    """``affine`` composed with a left-right mirror of spatial axis 1 (columns of (C, H, W)): j -> ``width-1-j``.

    Example:
        >>> mirror_affine(torch.eye(4, dtype=torch.float64), 10)[1].tolist()
        [0.0, -1.0, 0.0, 9.0]
    """
    reflect = torch.eye(affine.shape[0], dtype=affine.dtype)
    reflect[1, 1], reflect[1, -1] = -1.0, float(width - 1)
    return affine @ reflect


def chest_wall_pectoral(grey: np.ndarray, breast: np.ndarray, chest_wall: str) -> np.ndarray:
    """:func:`find_pectoral_muscle` for a chest wall on the ``"left"`` or ``"right"`` of the image.

    Example:
        >>> grey = np.zeros((80, 60), np.float32); grey[:, 20:] = 0.4; grey[:20, 45:] = 0.9
        >>> bool(chest_wall_pectoral(grey, grey > 0, "right")[5, 55])
        True
    """
    if chest_wall == "left":
        return find_pectoral_muscle(grey, breast)
    return find_pectoral_muscle(grey[:, ::-1], breast[:, ::-1])[:, ::-1]
