"""Binary-mask morphology (OpenCV) shared by the anatomy mask and the pectoral-muscle finder.

A separate module so that :mod:`common.transforms.artifact_mask` and :mod:`common.transforms.mammography`
can both use it without importing each other.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["odd_kernel", "largest_component", "fill_region"]


def odd_kernel(shape: tuple[int, ...], fraction: float) -> np.ndarray:
    """Elliptic structuring element, ``fraction`` of the short side of ``shape``, odd and at least 3 px.

    Example:
        >>> odd_kernel((100, 200), 0.05).shape
        (5, 5)
    """
    size = max(3, int(round(fraction * min(shape))) | 1)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def largest_component(binary: np.ndarray, seed: tuple[slice, slice] | None = None) -> np.ndarray:
    """Largest 8-connected component of ``binary``; with ``seed``, only components present in that window.

    Args:
        binary: ``(H, W)`` mask (any dtype; non-zero is foreground).
        seed: ``(rows, cols)`` window a component must reach to count.

    Returns:
        Boolean mask of the component; all False when there is none.

    Example:
        >>> binary = np.zeros((8, 8), np.uint8); binary[0:2, 0:2] = 1; binary[4:8, 4:8] = 1
        >>> int(largest_component(binary).sum()), int(largest_component(binary, (slice(0, 1), slice(0, 1))).sum())
        (16, 4)
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
    candidates = np.arange(1, count) if seed is None else np.setdiff1d(np.unique(labels[seed]), [0])
    if candidates.size == 0:
        return np.zeros(binary.shape, dtype=bool)
    best = candidates[np.argmax(stats[candidates, cv2.CC_STAT_AREA])]
    return labels == best


def fill_region(region: np.ndarray, hull: bool) -> np.ndarray:
    """Fill ``region`` to its outer contour (holes closed) or, with ``hull``, to its convex hull.

    Example:
        >>> ring = np.zeros((9, 9), np.uint8); ring[2:7, 2:7] = 1; ring[4, 4] = 0
        >>> bool(fill_region(ring, hull=False)[4, 4])
        True
    """
    filled = np.zeros(region.shape, dtype=np.uint8)
    points = cv2.findNonZero(region.astype(np.uint8))
    if points is None:
        return filled.astype(bool)
    if hull:
        cv2.fillConvexPoly(filled, cv2.convexHull(points), (1,))
    else:
        contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(filled, contours, -1, (1,), thickness=cv2.FILLED)
    return filled.astype(bool)
