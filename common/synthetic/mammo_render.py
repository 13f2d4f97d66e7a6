"""Render synthetic full-field mammograms: breast, pectoral muscle, burned-in text, marker and findings.

Images are stored as displayed (the mammography convention of :mod:`common.transforms.artifact_mask`): a
left breast (``"L"``) has its chest wall on the left edge of the image, a right breast on the right edge.
The image is portrait, ``image_size`` high and ``3 * image_size // 4`` wide, uint16 using the full 16-bit
range (background near 0, dense tissue bright: MONOCHROME2). Burned-in text and a bright square marker sit
in the two corners away from the chest wall, clear of the breast, so an artifact mask can remove them.

The label signal is the appearance of the findings, as on real films:

* malignant: an irregular bright mass with thin radiating spicules, or a tight cluster of tiny bright
  micro-calcifications (fine structures a small white top-hat keeps);
* benign: a round, smooth-edged mass, or a few coarse round calcifications scattered over the breast
  (structures wider than a small top-hat kernel).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from common.errors import ConfigError

__all__ = ["MammoFinding", "FINDING_KINDS", "render_mammogram", "mammogram_shape"]

FINDING_KINDS = ("mass", "calcification")
_VIEWS = ("CC", "MLO")
_LATERALITIES = ("L", "R")
_FAT, _GLAND, _MUSCLE, _TEXT, _BACKGROUND = 0.36, 0.2, 0.74, 0.92, 0.02
_FINDING_CONTRAST = {"mass": 0.26, "calcification": 0.36}


@dataclass(frozen=True)
class MammoFinding:
    """One abnormality to draw.

    Attributes:
        kind: ``"mass"`` or ``"calcification"``.
        malignant: draw the malignant appearance (spiculated mass / clustered micro-calcifications).
    """

    kind: str
    malignant: bool


@dataclass(frozen=True)
class _Breast:
    """Half-ellipse breast with its chest wall on x = 0 (pixel units) and an optional pectoral wedge."""

    height: int
    width: int
    cy: float
    ax: float
    ay: float
    pectoral: tuple[float, float] | None  # (width, height) of the wedge in the top chest-wall corner

    def radius(self) -> np.ndarray:
        """Normalised elliptic radius of every pixel (1 on the skin line)."""
        yy, xx = np.mgrid[0 : self.height, 0 : self.width].astype(np.float32)
        return np.sqrt((xx / self.ax) ** 2 + ((yy - self.cy) / self.ay) ** 2)

    def in_pectoral(self, x: float, y: float, margin: float = 0.0) -> bool:
        if self.pectoral is None:
            return False
        pw, ph = self.pectoral
        return x / (pw + margin) + y / (ph + margin) < 1.0


def mammogram_shape(image_size: int) -> tuple[int, int]:
    """``(height, width)`` of a rendered mammogram: portrait, width three quarters of the height."""
    return image_size, (3 * image_size) // 4


def _sample_breast(view: str, rng: np.random.Generator, image_size: int) -> _Breast:
    height, width = mammogram_shape(image_size)
    if view == "CC":
        cy, ay, pectoral = rng.uniform(0.47, 0.53) * height, rng.uniform(0.34, 0.4) * height, None
    else:  # MLO: taller, reaching the top of the film, with the pectoral muscle in the upper corner
        cy, ay = rng.uniform(0.4, 0.45) * height, rng.uniform(0.44, 0.48) * height
        pectoral = (rng.uniform(0.25, 0.35) * width, rng.uniform(0.3, 0.42) * height)
    return _Breast(height, width, cy, rng.uniform(0.6, 0.7) * width, ay, pectoral)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to zero mean, unit standard deviation."""
    field = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), max(sigma, 0.5))
    return (field - field.mean()) / max(float(field.std()), 1e-6)


def _draw_tissue(breast: _Breast, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Breast tissue image and the (soft) breast mask, chest wall on the left."""
    shape, size = (breast.height, breast.width), breast.height
    radius = breast.radius()
    mask = cv2.GaussianBlur((radius <= 1.0).astype(np.float32), (0, 0), max(0.5, 0.004 * size))
    xx = np.arange(breast.width, dtype=np.float32)[None, :] / breast.ax
    # Fibroglandular tissue: blobs denser near the chest wall and the nipple line, fat towards the skin.
    density = rng.uniform(0.5, 1.2)
    blobs = np.clip(_smooth_noise(rng, shape, 0.035 * size) * 0.5 + 0.5, 0.0, 1.0)
    gland = density * blobs * np.exp(-((radius / 0.75) ** 2)) * (0.6 + 0.4 * np.exp(-xx))
    fine = 0.025 * _smooth_noise(rng, shape, 0.006 * size)
    thickness = 0.7 + 0.3 * np.sqrt(np.clip(1.0 - radius**2, 0.0, 1.0))  # thinner tissue at the skin edge
    tissue = (_FAT + _GLAND * gland + fine) * thickness
    if breast.pectoral is not None:
        pw, ph = breast.pectoral
        yy, xx_px = np.mgrid[0 : breast.height, 0 : breast.width].astype(np.float32)
        wedge = cv2.GaussianBlur(((xx_px / pw + yy / ph) < 1.0).astype(np.float32), (0, 0), max(0.5, 0.004 * size))
        tissue = tissue * (1.0 - wedge) + (_MUSCLE + 0.02 * _smooth_noise(rng, shape, 0.02 * size)) * wedge
    return tissue * mask, mask


def _finding_site(breast: _Breast, rng: np.random.Generator) -> tuple[float, float]:
    """A point well inside the breast, away from the skin line, the chest wall and the pectoral muscle."""
    for _ in range(100):
        r, angle = 0.65 * np.sqrt(rng.uniform()), rng.uniform(-np.pi / 2, np.pi / 2)
        x, y = breast.ax * r * np.cos(angle), breast.cy + breast.ay * r * np.sin(angle)
        if x > 0.1 * breast.width and 0 < y < breast.height and not breast.in_pectoral(x, y, 0.05 * breast.height):
            return float(x), float(y)
    return 0.35 * breast.ax, breast.cy  # always inside; reached only for extreme shapes


def _px(value: float) -> int:
    return int(round(value))


def _spiculated_mass(shape: tuple[int, int], breast: _Breast, rng: np.random.Generator) -> np.ndarray:
    size = breast.height
    x, y = _finding_site(breast, rng)
    r = rng.uniform(0.035, 0.05) * size
    angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(9, 14))))
    radii = r * rng.uniform(0.65, 1.3, angles.size)
    polygon = np.stack([x + radii * np.cos(angles), y + radii * np.sin(angles)], axis=1)
    layer = np.zeros(shape, np.float32)
    cv2.fillPoly(layer, [np.round(polygon).astype(np.int32)], (1.0,))
    thickness = max(1, size // 256)
    for angle in rng.uniform(0, 2 * np.pi, int(rng.integers(10, 16))):
        length = r * rng.uniform(1.8, 3.0)
        end = (_px(x + length * np.cos(angle)), _px(y + length * np.sin(angle)))
        cv2.line(layer, (_px(x), _px(y)), end, (0.8,), thickness, cv2.LINE_AA)
    return layer


def _round_mass(shape: tuple[int, int], breast: _Breast, rng: np.random.Generator) -> np.ndarray:
    size = breast.height
    x, y = _finding_site(breast, rng)
    r = rng.uniform(0.035, 0.05) * size
    layer = np.zeros(shape, np.float32)
    axes = (_px(r), _px(r * rng.uniform(0.8, 1.0)))
    cv2.ellipse(layer, (_px(x), _px(y)), axes, float(rng.uniform(0, 180)), 0, 360, (1.0,), -1, cv2.LINE_AA)
    return cv2.GaussianBlur(layer, (0, 0), 0.2 * r)


def _clustered_calcifications(shape: tuple[int, int], breast: _Breast, rng: np.random.Generator) -> np.ndarray:
    size = breast.height
    x, y = _finding_site(breast, rng)
    spread, dot = rng.uniform(0.012, 0.02) * size, max(1, size // 256)
    layer = np.zeros(shape, np.float32)
    for dx, dy in rng.normal(0.0, spread, (int(rng.integers(10, 18)), 2)):
        cv2.circle(layer, (_px(x + dx), _px(y + dy)), dot, (float(rng.uniform(0.8, 1.0)),), -1, cv2.LINE_AA)
    return layer


def _scattered_calcifications(shape: tuple[int, int], breast: _Breast, rng: np.random.Generator) -> np.ndarray:
    size = breast.height
    layer = np.zeros(shape, np.float32)
    for _ in range(int(rng.integers(3, 7))):
        x, y = _finding_site(breast, rng)
        cv2.circle(layer, (_px(x), _px(y)), max(3, _px(rng.uniform(0.012, 0.02) * size)), (1.0,), -1, cv2.LINE_AA)
    return cv2.GaussianBlur(layer, (0, 0), max(0.7, 0.003 * size))


_DRAW = {
    ("mass", True): _spiculated_mass,
    ("mass", False): _round_mass,
    ("calcification", True): _clustered_calcifications,
    ("calcification", False): _scattered_calcifications,
}


def _burn_in(img: np.ndarray, laterality: str, view: str, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Write the view label in the top far corner and a marker square in the bottom far corner."""
    height, width = img.shape
    scale, thickness = height / 640.0, max(1, height // 256)
    text = f"{laterality}-{view}"
    (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    margin, pad = max(2, _px(0.03 * width)), thickness + 1
    x = width - margin - text_w if laterality == "L" else margin
    y = margin + text_h
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (_TEXT,), thickness, cv2.LINE_AA)
    box = (max(0, x - pad), max(0, y - text_h - pad), min(width, x + text_w + pad), min(height, y + baseline + pad))
    side = max(3, _px(rng.uniform(0.035, 0.05) * height))
    mx = width - margin - side if laterality == "L" else margin
    img[height - margin - side : height - margin, mx : mx + side] = 1.0
    return box


def render_mammogram(
    findings: Sequence[MammoFinding],
    laterality: str,
    view: str,
    rng: np.random.Generator,
    image_size: int = 256,
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Render one synthetic full-field mammogram showing ``findings``.

    Anatomy, each finding, the burned-in label and the noise draw from separate child generators spawned
    from ``rng``, so the same ``rng`` state with and without findings gives the same breast.

    Args:
        findings: abnormalities to draw (empty for a normal mammogram).
        laterality: ``"L"`` (chest wall on the left edge) or ``"R"`` (chest wall on the right edge).
        view: ``"CC"`` or ``"MLO"`` (MLO adds the pectoral muscle in the upper chest-wall corner).
        rng: seeded generator (not modified beyond spawning children).
        image_size: image height in pixels (at least 64); the width is ``3 * image_size // 4``.

    Returns:
        ``(pixels, text_box)``: ``(H, W)`` uint16 MONOCHROME2 pixels and the burned-in text's bounding
        box ``(x0, y0, x1, y1)`` (pixels ``[y0:y1, x0:x1]``), which lies outside the breast.

    Raises:
        ConfigError: on an unknown laterality, view or finding kind, or ``image_size < 64``.

    Example:
        >>> pixels, box = render_mammogram([MammoFinding("mass", True)], "L", "CC", np.random.default_rng(0), 128)
        >>> pixels.shape, pixels.dtype, box[0] > 64
        ((128, 96), dtype('uint16'), True)
    """
    if laterality not in _LATERALITIES or view not in _VIEWS or image_size < 64:
        raise ConfigError(
            f"render_mammogram needs laterality in {_LATERALITIES}, view in {_VIEWS} and image_size >= 64; "
            f"got {laterality!r}, {view!r}, {image_size}"
        )
    unknown = [f.kind for f in findings if f.kind not in FINDING_KINDS]
    if unknown:
        raise ConfigError(f"unknown finding kind(s) {unknown}; choose from: {', '.join(FINDING_KINDS)}")
    anatomy_rng, text_rng, noise_rng, *finding_rngs = rng.spawn(3 + len(findings))
    breast = _sample_breast(view, anatomy_rng, image_size)
    img, mask = _draw_tissue(breast, anatomy_rng)
    for finding, finding_rng in zip(findings, finding_rngs, strict=True):
        layer = _DRAW[finding.kind, finding.malignant](mammogram_shape(image_size), breast, finding_rng)
        img = img + _FINDING_CONTRAST[finding.kind] * layer * mask
    img = cv2.GaussianBlur(img, (0, 0), 0.5)
    if laterality == "R":
        img = np.ascontiguousarray(img[:, ::-1])
    img = np.maximum(img, _BACKGROUND)
    text_box = _burn_in(img, laterality, view, text_rng)
    img = img + noise_rng.normal(0.0, 0.008, img.shape).astype(np.float32)
    return (np.clip(img, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16), text_box
