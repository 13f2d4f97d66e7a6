"""One visual sign per ChestX-ray14 finding, drawn on a synthetic chest (``synthetic_cxr_anatomy``).

Each sign is a function ``(image, anatomy, rng) -> image`` on a float32 image in [0, 1]. Signs are
sized and contrasted to stay visible at 64 px (features of >= ~6 px, contrast >= ~0.25), placed where
the finding occurs on real films, and jittered in position and size. :data:`FINDING_SIGNS` lists them
in drawing order: global changes of shape (Emphysema, Cardiomegaly) first, local signs after.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from common.synthetic.cxr_anatomy import Anatomy, Ellipse, ellipse_mask, px

__all__ = ["FindingSign", "FINDING_SIGNS"]

FindingSign = Callable[[np.ndarray, Anatomy, np.random.Generator], np.ndarray]


def _blend(img: np.ndarray, mask: np.ndarray, value: float) -> np.ndarray:
    """Replace ``img`` by ``value`` where ``mask`` is 1, mixing in between."""
    return img * (1.0 - mask) + value * mask


def _soft(mask: np.ndarray, size: int, sigma: float = 0.006) -> np.ndarray:
    """Soften a mask's edges by a Gaussian of ``sigma`` image fractions."""
    return cv2.GaussianBlur(mask, (0, 0), max(0.5, sigma * size))


def _side(rng: np.random.Generator) -> int:
    return int(rng.integers(2))


def emphysema(img: np.ndarray, a: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Hyperinflated, hyperlucent lungs: larger, lower-reaching and much darker lung fields."""
    grow = rng.uniform(1.1, 1.18)
    mask = np.zeros_like(img)
    for side, lung in enumerate(a.lungs):
        outward = a.lateral_sign(side) * 0.08 * lung.ax
        big = Ellipse(lung.cx + outward, lung.cy + 0.1 * lung.ay, lung.ax * grow, lung.ay * grow)
        mask = np.maximum(mask, ellipse_mask(a.size, big, blur=0.006))
    mask *= 1.0 - ellipse_mask(a.size, a.heart)
    return img * (1.0 - rng.uniform(0.6, 0.7) * mask)


def cardiomegaly(img: np.ndarray, a: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Enlarged heart shadow (cardiothoracic ratio well above 0.5)."""
    h = a.heart
    big = Ellipse(h.cx - 0.01, h.cy - 0.01, h.ax * rng.uniform(1.6, 1.85), h.ay * rng.uniform(1.25, 1.45))
    return _blend(img, ellipse_mask(a.size, big, blur=0.005), a.dense)


def pneumothorax(img: np.ndarray, a: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Black, marking-free crescent at the apex / lateral edge outside a thin visceral pleural line."""
    side, size = _side(rng), a.size
    lung, sign = a.lungs[side], a.lateral_sign(side)
    shrink_x, shrink_y = rng.uniform(0.35, 0.5), rng.uniform(0.15, 0.3)
    # The collapsed lung keeps its medial edge and base; air fills the apex and lateral rim.
    centre_x, centre_y = lung.cx - sign * lung.ax * shrink_x, lung.cy + lung.ay * shrink_y
    collapsed = Ellipse(centre_x, centre_y, lung.ax * (1 - shrink_x), lung.ay * (1 - shrink_y))
    field = a.lung_field(side)
    img = _blend(img, _soft(field * (1.0 - ellipse_mask(size, collapsed)), size), 0.01)
    line = np.zeros_like(img)
    centre, axes = (px(size, collapsed.cx), px(size, collapsed.cy)), (px(size, collapsed.ax), px(size, collapsed.ay))
    cv2.ellipse(line, centre, axes, 0, 0, 360, 1.0, max(1, px(size, 0.01)))
    return img + 0.25 * line * field


def atelectasis(img: np.ndarray, a: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Bright plate-like band in the mid / lower zone of one lung."""
    side, size = _side(rng), a.size
    x, y = a.lung_point(side, rng.uniform(-0.2, 0.3), rng.uniform(0.05, 0.4))
    half = a.lungs[side].ax * rng.uniform(0.75, 0.95)
    angle = np.deg2rad(rng.uniform(-25, 25))
    dx, dy = half * np.cos(angle), half * np.sin(angle)
    mask = np.zeros_like(img)
    cv2.line(mask, (px(size, x - dx), px(size, y - dy)), (px(size, x + dx), px(size, y + dy)), 1.0,
             max(1, px(size, rng.uniform(0.06, 0.075))))  # fmt: skip
    return _blend(img, _soft(mask, size) * a.lung_field(side), a.dense + 0.05)


def infiltration(img: np.ndarray, a: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Patchy, mottled opacities over the mid zone of one or both lungs."""
    size = a.size
    sides = (0, 1) if rng.random() < 0.4 else (_side(rng),)
    cells = 14  # patch scale is a fixed fraction of the image, so the texture looks alike at any size
    noise = cv2.resize(rng.random((cells, cells)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    patches = np.clip((noise - 0.45) * 4.0, 0.0, 1.0)
    region = np.zeros_like(img)
    for side in sides:
        x, y = a.lung_point(side, rng.uniform(-0.2, 0.3), rng.uniform(-0.3, 0.25))
        lung = a.lungs[side]
        region = np.maximum(region, ellipse_mask(size, Ellipse(x, y, lung.ax * 0.85, lung.ay * 0.45), blur=0.02))
    return img + 0.5 * patches * region * a.lung_field()


def mass(img: np.ndarray, a: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """One large, well-defined round opacity inside a lung."""
    side = _side(rng)
    x, y = a.lung_point(side, rng.uniform(-0.3, 0.5), rng.uniform(-0.5, 0.3))
    radius = rng.uniform(0.07, 0.09)
    blob = ellipse_mask(a.size, Ellipse(x, y, radius, radius * rng.uniform(0.85, 1.15)), blur=0.005)
    return _blend(img, blob, a.dense + 0.12)


def nodule(img: np.ndarray, a: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """A few small, very bright round dots scattered over the lungs."""
    mask = np.zeros_like(img)
    for _ in range(int(rng.integers(3, 6))):
        x, y = a.lung_point(_side(rng), rng.uniform(-0.6, 0.8), rng.uniform(-0.7, 0.6))
        radius = rng.uniform(0.02, 0.028)
        mask = np.maximum(mask, ellipse_mask(a.size, Ellipse(x, y, radius, radius), blur=0.003))
    return _blend(img, mask, a.dense + 0.2)


def pneumonia(img: np.ndarray, a: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Hazy, ill-defined opacity in the lower zone of one lung."""
    side = _side(rng)
    lung = a.lungs[side]
    x, y = a.lung_point(side, rng.uniform(0.0, 0.45), rng.uniform(0.1, 0.4))
    shape = Ellipse(x, y, lung.ax * rng.uniform(0.7, 0.9), lung.ay * rng.uniform(0.32, 0.42))
    return img + 0.5 * ellipse_mask(a.size, shape, blur=0.03) * _soft(a.lung_field(side), a.size, 0.01)


def consolidation(img: np.ndarray, a: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Dense, homogeneous upper-lobe opacity, bounded by the lung border below by a slanted fissure."""
    side, size = _side(rng), a.size
    lung = a.lungs[side]
    _, medial_y = a.lung_point(side, -1.0, rng.uniform(-0.4, -0.15))
    slope = rng.uniform(-0.25, 0.25) * a.lateral_sign(side)
    columns = (np.arange(size, dtype=np.float32) + 0.5) / size
    fissure = medial_y + slope * (columns - (lung.cx - a.lateral_sign(side) * lung.ax))
    rows = columns[:, None]
    lobe = (rows < fissure[None, :]) * a.lung_field(side)
    return _blend(img, _soft(lobe.astype(np.float32), size, 0.004), a.tissue + 0.2)


def edema(img: np.ndarray, a: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Bilateral perihilar ("bat-wing") haze next to the mediastinum."""
    haze = np.zeros_like(img)
    for side, lung in enumerate(a.lungs):
        x, y = a.lung_point(side, rng.uniform(-0.6, -0.4), rng.uniform(-0.15, 0.1))
        shape = Ellipse(x, y, lung.ax * rng.uniform(0.5, 0.65), lung.ay * rng.uniform(0.4, 0.5))
        haze = np.maximum(haze, ellipse_mask(a.size, shape, blur=0.035))
    return img + 0.35 * haze * a.lung_field()


def fibrosis(img: np.ndarray, a: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Reticular (net-like) lines in the peripheral upper / mid zones of both lungs."""
    size = a.size
    lines = np.zeros_like(img)
    thickness = max(1, px(size, 0.014))
    for side in (0, 1):
        for _ in range(int(rng.integers(12, 18))):
            x, y = a.lung_point(side, rng.uniform(0.0, 0.9), rng.uniform(-0.85, 0.2))
            length, angle = rng.uniform(0.05, 0.09), rng.uniform(0, np.pi)
            end = (x + length * np.cos(angle), y + length * np.sin(angle))
            cv2.line(lines, (px(size, x), px(size, y)), (px(size, end[0]), px(size, end[1])), 1.0, thickness)
    return img + 0.32 * lines * a.lung_field()


def pleural_thickening(img: np.ndarray, a: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Bright band lining the apex and upper lateral edge of one lung."""
    side, size = _side(rng), a.size
    lung = a.lungs[side]
    thickness = rng.uniform(0.03, 0.042)
    start, stop = (-110, 20) if a.lateral_sign(side) > 0 else (160, 290)
    centre = (px(size, lung.cx), px(size, lung.cy))
    axes = (px(size, lung.ax - thickness / 2), px(size, lung.ay - thickness / 2))
    mask = np.zeros_like(img)
    jitter = rng.uniform(-15, 15)
    cv2.ellipse(mask, centre, axes, 0, start + jitter, stop + jitter, 1.0, max(1, px(size, thickness)))
    return _blend(img, _soft(mask, size), a.dense + 0.05)


def effusion(img: np.ndarray, a: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Fluid filling a lung base up to a meniscus that climbs laterally (blunted costophrenic angle)."""
    size = a.size
    sides = (0, 1) if rng.random() < 0.3 else (_side(rng),)
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    fluid = np.zeros_like(img)
    for side in sides:
        lung = a.lungs[side]
        level = lung.cy + lung.ay * rng.uniform(0.3, 0.55)
        lateral = np.clip((grid - lung.cx) * a.lateral_sign(side) / lung.ax, 0.0, 1.2)
        meniscus = level - 0.3 * lung.ay * lateral**2
        fluid = np.maximum(fluid, (grid[:, None] > meniscus[None, :]) * a.lung_field(side))
    return _blend(img, _soft(fluid.astype(np.float32), size), a.tissue + 0.2)


def hernia(img: np.ndarray, a: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Hiatal hernia: a round gas bubble with a bright wall and an air-fluid level just below the heart."""
    h = a.heart
    radius = rng.uniform(0.065, 0.085)
    x, y = h.cx - rng.uniform(0.0, 0.04), h.cy + h.ay + radius * rng.uniform(0.7, 0.9)
    wall = 0.018
    img = _blend(img, ellipse_mask(a.size, Ellipse(x, y, radius, radius), blur=0.003), a.dense + 0.1)
    rows = ((np.arange(a.size, dtype=np.float32) + 0.5) / a.size)[:, None]
    gas = ellipse_mask(a.size, Ellipse(x, y, radius - wall, radius - wall), blur=0.003) * (rows < y + 0.3 * radius)
    return _blend(img, gas, 0.05)


#: Finding name -> sign, in drawing order (shape changes first, then local signs).
FINDING_SIGNS: dict[str, FindingSign] = {
    "Emphysema": emphysema,
    "Cardiomegaly": cardiomegaly,
    "Pneumothorax": pneumothorax,
    "Atelectasis": atelectasis,
    "Infiltration": infiltration,
    "Mass": mass,
    "Nodule": nodule,
    "Pneumonia": pneumonia,
    "Consolidation": consolidation,
    "Edema": edema,
    "Fibrosis": fibrosis,
    "Pleural_Thickening": pleural_thickening,
    "Effusion": effusion,
    "Hernia": hernia,
}
