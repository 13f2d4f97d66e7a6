"""Boxes around the signs the synthetic chest generator draws, as NIH's ``BBox_List_2017.csv`` gives them.

The generator knows where it draws: :func:`sign_boxes` compares the image just before and just after one finding's
sign (before blur and noise) and boxes the pixels the sign changed by more than ``threshold`` (image in [0, 1]).
Changed pixels closer than ``merge`` image fractions form one box (an infiltrate's patches, one lung's effusion);
separate lesions get separate boxes (each nodule, each side of a bilateral effusion), as NIH's readers drew them.
Boxes are ``(x, y, w, h)`` in pixels of the rendered image (column / row of the top-left corner, width, height):
the pixel grid of the stored PNG.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["BOXED_FINDINGS", "sign_boxes"]

#: Findings NIH's BBox_List_2017.csv has boxes for; the generator writes boxes for these only.
BOXED_FINDINGS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
)  # fmt: skip


def sign_boxes(before: np.ndarray, after: np.ndarray, threshold: float = 0.1, merge: float = 0.06,
               min_area: float = 0.0005) -> list[tuple[int, int, int, int]]:  # fmt: skip
    """Boxes ``(x, y, w, h)`` of the regions where ``after`` differs from ``before`` by more than ``threshold``.

    Args:
        before: the float image before the sign.
        after: the float image after the sign.
        threshold: smallest intensity change counted as drawn.
        merge: changed pixels within this fraction of the image side are boxed together.
        min_area: components smaller than this fraction of the image area (at least 2 px) are ignored.

    Example:
        >>> img = np.zeros((32, 32), np.float32)
        >>> out = img.copy(); out[4:8, 10:20] = 1.0
        >>> sign_boxes(img, out)
        [(10, 4, 10, 4)]
    """
    changed = (np.abs(after - before) > threshold).astype(np.uint8)
    if not changed.any():
        return []
    size = max(changed.shape)
    radius = max(1, round(merge * size / 2))
    grown = cv2.dilate(changed, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    count, labels = cv2.connectedComponents(grown, connectivity=8)
    boxes = []
    for label in range(1, count):
        rows, cols = np.nonzero((labels == label) & (changed > 0))
        if len(rows) < max(2, min_area * changed.size):
            continue
        x0, y0 = int(cols.min()), int(rows.min())
        boxes.append((x0, y0, int(cols.max()) - x0 + 1, int(rows.max()) - y0 + 1))
    return sorted(boxes, key=lambda box: (box[1], box[0]))
