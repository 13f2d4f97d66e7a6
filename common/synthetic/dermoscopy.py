"""Synthetic dermoscopy: skin-lesion photographs in a class-folder layout (``root/<diagnosis>/<image>.jpg``).

:func:`render_dermoscopy` draws skin (a random skin tone with blotchy shading, a few hairs, the dark circular rim of
a contact dermatoscope) and one pigmented lesion whose visible signs follow the diagnosis, as in the ABCD rule:

- ``nevus`` (benign melanocytic nevus): small to medium, round, regular border, one even brown;
- ``melanoma``: large, asymmetric with an irregular (notched) border, variegated colours (dark brown, black,
  blue-grey veil, red-pink patches);
- ``keratosis`` (seborrhoeic keratosis): light tan to mid brown, medium size, waxy granular surface with white
  milia-like dots.

Signs overlap between classes (sizes and tones are drawn from overlapping ranges), so the task is learnable but not
trivial. :func:`generate_dermoscopy` writes the images as HAM10000-style ``ISIC_00xxxxx.jpg`` files into one folder
per class with ``patients.csv`` (HAM10000 has several images of one lesion: patients get 1 to 3 images).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from common.synthetic.class_folders import write_class_folders

__all__ = ["DERMOSCOPY_CLASSES", "render_dermoscopy", "generate_dermoscopy"]

DERMOSCOPY_CLASSES: tuple[str, ...] = ("keratosis", "melanoma", "nevus")
_SKIN = np.array([[238, 200, 176], [224, 178, 150], [198, 150, 118], [168, 118, 88]], np.float32)


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    field = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), max(sigma, 0.5))
    return (field - field.mean()) / (float(field.std()) + 1e-6)


def _lesion_mask(rng: np.random.Generator, size: int, radius: float, irregularity: float) -> np.ndarray:
    """Soft lesion mask in [0, 1]: a star polygon around a jittered centre, ``irregularity`` = radial noise."""
    centre = size / 2 + rng.uniform(-0.08, 0.08, 2) * size
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    harmonics = np.arange(2, 9)[:, None]  # a periodic border: random low and mid harmonics
    wobble = (rng.normal(0, 1, (7, 1)) * np.cos(harmonics * angles + rng.uniform(0, 2 * np.pi, (7, 1)))).sum(0) / 2.6
    stretch = rng.uniform(0.8, 1.0)  # mild elongation along a random axis
    phase = rng.uniform(0, np.pi)
    radii = radius * (1 + irregularity * wobble) * (1 - (1 - stretch) * np.cos(angles - phase) ** 2)
    points = centre + np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    mask = np.zeros((size, size), np.float32)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1.0)
    return cv2.GaussianBlur(mask, (0, 0), max(size / 100, 0.5))


def _skin(rng: np.random.Generator, size: int) -> np.ndarray:
    tone = _SKIN[rng.integers(0, len(_SKIN))] * rng.uniform(0.93, 1.05)
    shading = 10 * _smooth_noise(rng, size, size / 8)[..., None]
    return tone + shading


def _hairs(rng: np.random.Generator, rgb: np.ndarray) -> None:
    size = rgb.shape[0]
    for _ in range(int(rng.integers(0, 4))):
        start, end = rng.uniform(0, size, (2, 2))
        bend = (start + end) / 2 + rng.normal(0, size / 8, 2)
        curve = np.array([start, bend, end])
        t = np.linspace(0, 1, 20)[:, None]
        points = (1 - t) ** 2 * curve[0] + 2 * (1 - t) * t * curve[1] + t**2 * curve[2]
        cv2.polylines(rgb, [np.round(points).astype(np.int32)], False, (60, 40, 30), max(1, size // 128))


def _vignette(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The dark circular field edge of a contact dermatoscope (on some images)."""
    size = rgb.shape[0]
    if rng.random() < 0.4:
        return rgb
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    distance = np.hypot(yy - size / 2, xx - size / 2) / (size / 2)
    keep = np.clip((rng.uniform(1.0, 1.3) - distance) * 8, 0, 1)[..., None]
    return rgb * keep + 15 * (1 - keep)


def _paint_lesion(rng: np.random.Generator, rgb: np.ndarray, cls: str, size: int) -> np.ndarray:
    """Blend the lesion of class ``cls`` into the skin; returns the new image (float)."""
    if cls == "melanoma":
        mask = _lesion_mask(rng, size, size * rng.uniform(0.24, 0.38), irregularity=rng.uniform(0.15, 0.3))
        base = np.array([92, 58, 40], np.float32) * rng.uniform(0.8, 1.1)
        colour = np.broadcast_to(base, (size, size, 3)).copy()
        palette = np.array([[40, 25, 20], [110, 120, 150], [190, 90, 100], [130, 80, 50]], np.float32)
        for _ in range(int(rng.integers(3, 6))):  # variegation: patches of other colours
            patch = _smooth_noise(rng, size, size / 14) > rng.uniform(0.6, 1.1)
            colour[patch] = palette[rng.integers(0, len(palette))]
        colour = cv2.GaussianBlur(colour, (0, 0), max(size / 90, 0.5))
    elif cls == "nevus":
        mask = _lesion_mask(rng, size, size * rng.uniform(0.13, 0.26), irregularity=rng.uniform(0.0, 0.05))
        colour = np.array([120, 78, 52], np.float32) * rng.uniform(0.75, 1.1) + 4 * _smooth_noise(rng, size, 2)[
            ..., None]  # fmt: skip
    else:  # keratosis
        mask = _lesion_mask(rng, size, size * rng.uniform(0.18, 0.3), irregularity=rng.uniform(0.04, 0.12))
        colour = np.array([170, 128, 92], np.float32) * rng.uniform(0.8, 1.05)
        colour = colour + 18 * _smooth_noise(rng, size, max(size / 64, 0.6))[..., None]  # waxy granular surface
        dots = (rng.random((size, size)) < 0.012).astype(np.float32)
        dots = cv2.dilate(dots, np.ones((max(1, size // 64),) * 2, np.uint8))
        colour = colour * (1 - dots[..., None]) + 235 * dots[..., None]  # milia-like cysts
    alpha = mask[..., None] * rng.uniform(0.85, 1.0)
    return rgb * (1 - alpha) + colour * alpha


def render_dermoscopy(rng: np.random.Generator, class_index: int, image_size: int) -> np.ndarray:
    """One dermoscopy-like RGB image (``image_size`` square, uint8) of class ``DERMOSCOPY_CLASSES[class_index]``.

    Example:
        >>> render_dermoscopy(np.random.default_rng(0), 1, 64).shape
        (64, 64, 3)
    """
    size = image_size
    rgb = _skin(rng, size)
    rgb = _paint_lesion(rng, rgb, DERMOSCOPY_CLASSES[class_index], size)
    hair = np.ascontiguousarray(rgb.astype(np.float32))
    _hairs(rng, hair)
    out = _vignette(hair, rng) + rng.normal(0, 3, hair.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def generate_dermoscopy(
    output_dir: str | os.PathLike, n_patients: int = 60, max_images_per_patient: int = 3, image_size: int = 64,
    seed: int = 0,
) -> Path:  # fmt: skip
    """Write a synthetic dermoscopy set: ``root/<keratosis|melanoma|nevus>/ISIC_00xxxxx.jpg`` + ``patients.csv``.

    Args:
        output_dir: dataset folder (created); class folders and ``patients.csv`` are replaced.
        n_patients: lesions (patients), balanced over the three classes.
        max_images_per_patient: each lesion has 1 to this many images.
        image_size: height and width in pixels (>= 16).
        seed: an image depends only on (seed, patient, image).

    Returns:
        ``output_dir`` as a Path.

    Example:
        >>> root = generate_dermoscopy("/tmp/derm", n_patients=30, image_size=64)  # doctest: +SKIP
        >>> sorted(p.name for p in root.iterdir())  # doctest: +SKIP
        ['keratosis', 'melanoma', 'nevus', 'patients.csv']
    """
    return write_class_folders(
        output_dir, render_dermoscopy, DERMOSCOPY_CLASSES, n_patients, max_images_per_patient, image_size, seed,
        name=lambda patient, image, cls, split: f"ISIC_{24306 + 4 * patient + image:07d}", suffix=".jpg",
    )  # fmt: skip
