"""Synthetic frontal chest radiograph anatomy: a jittered body, lungs, heart, mediastinum, spine and ribs.

Intensities are floats in [0, 1] (bright = dense, as on a radiograph). Geometry is sampled in image
fractions so one description draws at any size. Finding signs (see ``synthetic_cxr_signs``) are
placed relative to this geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Ellipse", "Anatomy", "sample_anatomy", "draw_anatomy", "ellipse_mask", "px"]

#: Image-left lung (the patient's right) first; ``lateral_sign`` gives the outward x direction.
LUNG_SIDES = (0, 1)


@dataclass(frozen=True)
class Ellipse:
    """An axis-aligned ellipse in image fractions: centre ``(cx, cy)`` and half-axes ``(ax, ay)``."""

    cx: float
    cy: float
    ax: float
    ay: float


@dataclass(frozen=True)
class Anatomy:
    """Sampled geometry and base intensities of one synthetic chest.

    Attributes:
        size: image side in pixels.
        body: soft-tissue outline.
        lungs: the two lung fields, image-left first.
        heart: heart shadow.
        midline: x of the mediastinum / spine centre (fraction).
        mediastinum: half-width of the mediastinum (fraction).
        tissue: soft-tissue intensity.
        lung: lung-field intensity.
        dense: heart / mediastinum intensity.
    """

    size: int
    body: Ellipse
    lungs: tuple[Ellipse, Ellipse]
    heart: Ellipse
    midline: float
    mediastinum: float
    tissue: float
    lung: float
    dense: float

    def lateral_sign(self, side: int) -> float:
        """-1 for the image-left lung (its outer edge is towards x = 0), +1 for the image-right lung."""
        return -1.0 if side == 0 else 1.0

    def lung_point(self, side: int, lateral: float, vertical: float) -> tuple[float, float]:
        """Point in lung ``side`` given ``lateral`` (-1 medial .. +1 lateral) and ``vertical`` (-1 apex .. +1 base)."""
        lung = self.lungs[side]
        return lung.cx + self.lateral_sign(side) * lateral * lung.ax, lung.cy + vertical * lung.ay

    def lung_field(self, side: int | None = None) -> np.ndarray:
        """Float mask of the visible lung field(s) (lung minus heart and mediastinum), values in [0, 1]."""
        sides = LUNG_SIDES if side is None else (side,)
        mask = np.zeros((self.size, self.size), np.float32)
        for index in sides:
            mask = np.maximum(mask, ellipse_mask(self.size, self.lungs[index]))
        mask *= 1.0 - ellipse_mask(self.size, self.heart)
        columns = (np.arange(self.size, dtype=np.float32) + 0.5) / self.size
        mask *= np.abs(columns - self.midline) > self.mediastinum  # broadcast over rows
        return mask


def px(size: int, fraction: float) -> int:
    """A fraction of the image side in whole pixels."""
    return int(round(fraction * size))


def ellipse_mask(size: int, shape: Ellipse, angle: float = 0.0, blur: float = 0.0) -> np.ndarray:
    """Filled ellipse as a float32 mask; ``blur`` is a Gaussian sigma in image fractions for soft edges."""
    mask = np.zeros((size, size), np.uint8)
    axes = (max(1, px(size, shape.ax)), max(1, px(size, shape.ay)))
    cv2.ellipse(mask, (px(size, shape.cx), px(size, shape.cy)), axes, angle, 0, 360, 255, -1)
    out = mask.astype(np.float32) / 255.0
    if blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), max(0.5, blur * size))
    return out


def sample_anatomy(rng: np.random.Generator, size: int) -> Anatomy:
    """Draw a jittered chest geometry (position, scale, lung and heart size) and base intensities."""
    mid = 0.5 + rng.uniform(-0.03, 0.03)
    scale = rng.uniform(0.93, 1.05)
    lung_y = 0.45 + rng.uniform(-0.02, 0.02)
    lung_ax, lung_ay = 0.135 * scale * rng.uniform(0.95, 1.05), 0.27 * scale * rng.uniform(0.95, 1.05)
    offset = 0.175 * scale
    lungs = (
        Ellipse(mid - offset, lung_y, lung_ax, lung_ay),
        Ellipse(mid + offset, lung_y + 0.01, lung_ax * 0.97, lung_ay * 0.97),
    )
    heart = Ellipse(mid + 0.045 * scale, lung_y + 0.17 * scale, 0.115 * scale, 0.09 * scale)
    return Anatomy(
        size=size,
        body=Ellipse(mid, 0.58, 0.44 * scale, 0.55),
        lungs=lungs,
        heart=heart,
        midline=mid,
        mediastinum=0.05 * scale,
        tissue=rng.uniform(0.38, 0.46),
        lung=rng.uniform(0.2, 0.26),
        dense=rng.uniform(0.6, 0.68),
    )


def _draw_ribs(anatomy: Anatomy) -> np.ndarray:
    """Faint rib arcs over both lungs, as an additive layer."""
    size = anatomy.size
    layer = np.zeros((size, size), np.float32)
    thickness = max(1, px(size, 0.012))
    for side in LUNG_SIDES:
        lung = anatomy.lungs[side]
        sign = anatomy.lateral_sign(side)
        for k in range(7):
            y = lung.cy - lung.ay + (k + 0.5) * 2 * lung.ay / 7
            centre = (px(size, anatomy.midline), px(size, y - 0.06))
            axes = (px(size, abs(lung.cx - anatomy.midline) + lung.ax), px(size, 0.1))
            start, end = (0, 90) if sign > 0 else (90, 180)
            cv2.ellipse(layer, centre, axes, 0, start, end, 0.07, thickness)
    return layer


def draw_anatomy(anatomy: Anatomy) -> np.ndarray:
    """Render the normal chest as a float32 ``size x size`` image in [0, 1]."""
    size = anatomy.size
    img = np.full((size, size), 0.04, np.float32)
    body = ellipse_mask(size, anatomy.body, blur=0.01)
    img += body * (anatomy.tissue - 0.04)
    neck = np.zeros_like(img)
    cv2.rectangle(neck, (px(size, anatomy.midline - 0.09), 0), (px(size, anatomy.midline + 0.09), px(size, 0.2)), 1, -1)
    img = np.maximum(img, neck * anatomy.tissue)
    lungs = anatomy.lung_field()
    ys = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None]
    lung_value = anatomy.lung * (0.8 + 0.5 * ys)  # bases look denser than apices (more overlying tissue)
    img = img * (1 - lungs) + lung_value * lungs
    img += _draw_ribs(anatomy) * lungs
    media = np.zeros_like(img)
    half = anatomy.mediastinum
    cv2.rectangle(media, (px(size, anatomy.midline - half), px(size, 0.12)),
                  (px(size, anatomy.midline + half), px(size, anatomy.heart.cy)), 1.0, -1)  # fmt: skip
    media = np.maximum(media, ellipse_mask(size, anatomy.heart))
    img = img * (1 - media) + anatomy.dense * media
    spine = np.zeros_like(img)
    left, right = px(size, anatomy.midline - 0.025), px(size, anatomy.midline + 0.025)
    cv2.rectangle(spine, (left, 0), (right, size), 0.1, -1)
    for y in np.arange(0.03, 1.0, 0.065):  # disc spaces
        cv2.line(spine, (left, px(size, y)), (right, px(size, y)), 0.05, max(1, px(size, 0.008)))
    img += spine
    for sign in (-1, 1):  # clavicles
        start = (px(size, anatomy.midline + sign * 0.05), px(size, 0.2))
        end = (px(size, anatomy.midline + sign * 0.32), px(size, 0.15))
        cv2.line(img, start, end, float(anatomy.tissue + 0.2), max(1, px(size, 0.025)))
    return cv2.GaussianBlur(img, (0, 0), max(0.5, 0.006 * size))
