"""Synthetic colonoscopy frames in a Kvasir-like class-folder layout (``root/<finding>/<image>.jpg``).

:func:`render_endoscopy` draws pink-red mucosa lit from the scope (bright centre, dark vignetted edge and a darker
lumen), specular highlights (white glints where the light hits wet mucosa), and the class's sign:

- ``normal``: smooth mucosa with a fine branching vessel pattern;
- ``polyp``: a raised, rounded, redder mass with shading from the light and its own glints;
- ``ulcerative-colitis``: erythematous, granular mucosa without visible vessels, with whitish fibrin-covered
  erosions.

:func:`generate_endoscopy` writes them into one folder per class with ``patients.csv`` (a patient's colonoscopy
gives 1 to 3 frames).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from common.synthetic.class_folders import write_class_folders

__all__ = ["ENDOSCOPY_CLASSES", "render_endoscopy", "generate_endoscopy"]

ENDOSCOPY_CLASSES: tuple[str, ...] = ("normal", "polyp", "ulcerative-colitis")


def _noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    field = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), max(sigma, 0.5))
    return (field - field.mean()) / (float(field.std()) + 1e-6)


def _vessels(rng: np.random.Generator, size: int) -> np.ndarray:
    """A layer in [0, 1] of thin branching lines (random walks)."""
    layer = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(3, 6))):
        point = rng.uniform(0, size, 2)
        heading = rng.uniform(0, 2 * np.pi)
        path = [point.copy()]
        for _ in range(12):
            heading += rng.normal(0, 0.5)
            point = point + size / 14 * np.array([np.cos(heading), np.sin(heading)])
            path.append(point.copy())
        cv2.polylines(layer, [np.round(np.array(path)).astype(np.int32)], False, 1.0, max(1, size // 96))
    return cv2.GaussianBlur(layer, (0, 0), 0.6)


def _glints(rng: np.random.Generator, size: int, count: int, where: np.ndarray | None = None) -> np.ndarray:
    """Specular highlights: small bright ellipses (inside ``where`` when given)."""
    layer = np.zeros((size, size), np.float32)
    candidates = np.argwhere(where) if where is not None else None
    for _ in range(count):
        if candidates is not None and len(candidates):
            y, x = candidates[rng.integers(0, len(candidates))]
        else:
            y, x = rng.integers(0, size, 2)
        axes = (max(1, int(size * rng.uniform(0.01, 0.03))), max(1, int(size * rng.uniform(0.005, 0.015))))
        cv2.ellipse(layer, (int(x), int(y)), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    return cv2.GaussianBlur(layer, (0, 0), 0.7)


def _lighting(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Brightness falling off from the scope light, and a dark lumen blob off centre; both (size, size)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    centre = 0.5 + rng.uniform(-0.1, 0.1, 2)
    distance = np.hypot(yy - centre[0], xx - centre[1])
    light = np.clip(1.15 - 1.1 * distance**1.5, 0.15, 1.0)
    lumen_at = rng.uniform(0.25, 0.75, 2)
    lumen = np.exp(-((yy - lumen_at[0]) ** 2 + (xx - lumen_at[1]) ** 2) / (2 * rng.uniform(0.05, 0.1) ** 2))
    return light, lumen.astype(np.float32)


def _polyp(rng: np.random.Generator, rgb: np.ndarray, size: int) -> np.ndarray:
    """A shaded dome (redder than the mucosa) with glints on its lit side."""
    radius = size * rng.uniform(0.12, 0.25)
    centre = rng.uniform(0.3, 0.7, 2) * size
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    r2 = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / radius**2
    dome = np.sqrt(np.clip(1 - r2, 0, 1))
    mask = cv2.GaussianBlur((r2 < 1).astype(np.float32), (0, 0), max(size / 120, 0.5))
    colour = np.array([205, 85, 80], np.float32) * (0.6 + 0.5 * dome[..., None])
    colour += 12 * _noise(rng, size, size / 40)[..., None]
    out = rgb * (1 - mask[..., None]) + colour * mask[..., None]
    glint = _glints(rng, size, int(rng.integers(1, 3)), where=dome > 0.6)
    return out * (1 - glint[..., None]) + 250 * glint[..., None]


def render_endoscopy(rng: np.random.Generator, class_index: int, image_size: int) -> np.ndarray:
    """One colonoscopy-like RGB frame (``image_size`` square, uint8) of ``ENDOSCOPY_CLASSES[class_index]``.

    Example:
        >>> render_endoscopy(np.random.default_rng(0), 1, 64).shape
        (64, 64, 3)
    """
    size, cls = image_size, ENDOSCOPY_CLASSES[class_index]
    base = np.array([226, 128, 118], np.float32) * rng.uniform(0.85, 1.05, 3)
    rgb = base + 10 * _noise(rng, size, size / 10)[..., None]
    if cls == "ulcerative-colitis":
        rgb = rgb * np.array([1.02, 0.8, 0.8], np.float32)  # erythema
        rgb += 22 * _noise(rng, size, max(size / 90, 0.5))[..., None]  # granular surface
        erosions = (_noise(rng, size, size / 20) > rng.uniform(1.3, 1.8)).astype(np.float32)
        erosions = cv2.GaussianBlur(erosions, (0, 0), 0.8)[..., None]
        rgb = rgb * (1 - erosions) + np.array([236, 226, 200], np.float32) * erosions
    else:
        vessels = _vessels(rng, size)[..., None]
        rgb = rgb * (1 - 0.5 * vessels) + np.array([150, 40, 50], np.float32) * 0.5 * vessels
    if cls == "polyp":
        rgb = _polyp(rng, rgb, size)
    light, lumen = _lighting(rng, size)
    rgb = rgb * light[..., None] * (1 - 0.8 * lumen[..., None])
    glint = _glints(rng, size, int(rng.integers(2, 7)))[..., None]
    rgb = rgb * (1 - glint) + 250 * glint
    return np.clip(rgb + rng.normal(0, 3, rgb.shape), 0, 255).astype(np.uint8)


def generate_endoscopy(
    output_dir: str | os.PathLike, n_patients: int = 60, max_images_per_patient: int = 3, image_size: int = 64,
    seed: int = 0,
) -> Path:  # fmt: skip
    """Write a synthetic endoscopy set: ``root/<normal|polyp|ulcerative-colitis>/<uuid-like>.jpg`` + ``patients.csv``.

    Args:
        output_dir: dataset folder (created); class folders and ``patients.csv`` are replaced.
        n_patients: patients, balanced over the three classes.
        max_images_per_patient: each patient has 1 to this many frames.
        image_size: height and width in pixels (>= 16).
        seed: a frame depends only on (seed, patient, frame).

    Returns:
        ``output_dir`` as a Path.

    Example:
        >>> root = generate_endoscopy("/tmp/endo", n_patients=30)  # doctest: +SKIP
    """
    return write_class_folders(
        output_dir, render_endoscopy, ENDOSCOPY_CLASSES, n_patients, max_images_per_patient, image_size, seed,
        name=lambda patient, image, cls, split: f"{patient:08x}-{image:04x}-4c2e-9a1f-{cls:012x}", suffix=".jpg",
    )  # fmt: skip
