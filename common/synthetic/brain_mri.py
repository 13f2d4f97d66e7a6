"""Synthetic brain MRI slices in the layout of the public brain-tumour MRI set (``Training|Testing/<class>/``).

The Figshare / Kaggle "Brain Tumor MRI Dataset" ships ``Training/`` and ``Testing/`` folders, each with
``glioma/``, ``meningioma/``, ``notumor/`` and ``pituitary/`` holding JPEGs named ``Tr-gl_0010.jpg`` /
``Te-me_0010.jpg``; it names no patients. :func:`render_brain_mri` draws a T1-post-contrast-like axial slice (bright
skull ring, grey brain with a wavy cortex, dark ventricles) and the class's tumour at its typical place:

- ``glioma``: intra-axial, inside a hemisphere; irregular, ring-enhancing (bright rim, dark necrotic core);
- ``meningioma``: extra-axial, against the skull; round, homogeneously bright;
- ``pituitary``: small, bright, midline at the skull base (the sella, low in the image);
- ``notumor``: none.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from common.synthetic.class_folders import write_class_folders

__all__ = ["BRAIN_MRI_CLASSES", "render_brain_mri", "generate_brain_mri"]

BRAIN_MRI_CLASSES: tuple[str, ...] = ("glioma", "meningioma", "notumor", "pituitary")
_PREFIX = {"glioma": "gl", "meningioma": "me", "notumor": "no", "pituitary": "pi"}


def _noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    field = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), max(sigma, 0.5))
    return (field - field.mean()) / (float(field.std()) + 1e-6)


def _disc(size: int, centre: np.ndarray, radii: tuple[float, float], angle: float = 0.0) -> np.ndarray:
    mask = np.zeros((size, size), np.float32)
    axes = (max(1, int(round(radii[0]))), max(1, int(round(radii[1]))))
    cv2.ellipse(mask, (int(round(centre[0])), int(round(centre[1]))), axes, angle, 0, 360, 1.0, -1)
    return mask


def _head(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float], np.ndarray]:
    """Grey head slice in [0, 1], the brain mask, the brain's semi-axes (x, y) and its centre (x, y)."""
    centre = np.array([size / 2, size / 2]) + rng.normal(0, size * 0.015, 2)
    ax, ay = size * rng.uniform(0.33, 0.38), size * rng.uniform(0.40, 0.45)
    skull = _disc(size, centre, (ax + size * 0.05, ay + size * 0.05))
    brain = _disc(size, centre, (ax, ay))
    image = 0.85 * (skull - brain)  # bright scalp / marrow ring
    cortex = 0.42 + 0.04 * _noise(rng, size, max(size / 40, 0.5))  # gyri-like mottling
    image += brain * cortex
    for side in (-1, 1):  # lateral ventricles: two dark crescents near the midline
        ventricle = _disc(size, centre + [side * size * 0.05, -size * 0.03], (size * 0.03, size * 0.1), side * 12.0)
        image -= 0.3 * ventricle * brain
    return image, brain, (ax, ay), centre


def _tumour(rng: np.random.Generator, image: np.ndarray, cls: str, axes: tuple[float, float], centre: np.ndarray
            ) -> np.ndarray:  # fmt: skip
    size = image.shape[0]
    ax, ay = axes
    if cls == "glioma":  # intra-axial: inside one hemisphere, away from skull and midline
        side = rng.choice([-1, 1])
        at = centre + [side * ax * rng.uniform(0.3, 0.5), ay * rng.uniform(-0.45, 0.3)]
        radius = size * rng.uniform(0.12, 0.17)
        outer = _disc(size, at, (radius, radius * rng.uniform(0.7, 1.0)), float(rng.uniform(0, 180)))
        outer *= (_noise(rng, size, size / 30) > -1.2).astype(np.float32)  # ragged edge
        core = _disc(size, at, (radius * 0.55, radius * 0.5))
        oedema = cv2.GaussianBlur(outer, (0, 0), radius * 0.5)
        return image - 0.15 * oedema + 0.6 * (outer - core) * (1 - image) - 0.35 * core
    if cls == "meningioma":  # extra-axial: touching the inner skull table
        angle = rng.uniform(0, 2 * np.pi)
        at = centre + [np.cos(angle) * ax * 0.88, np.sin(angle) * ay * 0.88]
        radius = size * rng.uniform(0.1, 0.15)
        mass = cv2.GaussianBlur(_disc(size, at, (radius, radius)), (0, 0), 0.8)
        return image * (1 - mass) + 0.9 * mass
    if cls == "pituitary":  # sella turcica: midline, low
        at = centre + [rng.normal(0, size * 0.01), ay * rng.uniform(0.55, 0.7)]
        radius = size * rng.uniform(0.07, 0.09)
        mass = cv2.GaussianBlur(_disc(size, at, (radius * 1.5, radius)), (0, 0), 0.6)  # flat, wider than tall
        return image * (1 - mass) + 0.95 * mass
    return image


def render_brain_mri(rng: np.random.Generator, class_index: int, image_size: int) -> np.ndarray:
    """One grey axial brain slice (``image_size`` square, uint8) of ``BRAIN_MRI_CLASSES[class_index]``.

    Example:
        >>> render_brain_mri(np.random.default_rng(0), 0, 64).shape
        (64, 64)
    """
    image, _, axes, centre = _head(rng, image_size)
    image = _tumour(rng, image, BRAIN_MRI_CLASSES[class_index], axes, centre)
    image = image * rng.uniform(0.85, 1.1) + rng.normal(0, 0.02, image.shape)  # scanner gain and noise
    return np.clip(image * 255, 0, 255).astype(np.uint8)


def generate_brain_mri(
    output_dir: str | os.PathLike, n_patients: int = 80, image_size: int = 64, test_fraction: float = 0.25,
    seed: int = 0,
) -> Path:  # fmt: skip
    """Write a synthetic brain-tumour MRI set: ``root/{Training,Testing}/<class>/{Tr,Te}-xx_NNNN.jpg``.

    One image per (anonymous) subject, as in the public set: no ``patients.csv``.

    Args:
        output_dir: dataset folder (created); ``Training/`` and ``Testing/`` are replaced.
        n_patients: images, balanced over the four classes.
        image_size: height and width in pixels (>= 16).
        test_fraction: share of each class in ``Testing/`` (at least one image of a class with two or more).
        seed: an image depends only on (seed, index).

    Returns:
        ``output_dir`` as a Path.

    Example:
        >>> root = generate_brain_mri("/tmp/brain", n_patients=40)  # doctest: +SKIP
        >>> sorted(p.name for p in root.iterdir())  # doctest: +SKIP
        ['Testing', 'Training']
    """
    return write_class_folders(
        output_dir, render_brain_mri, BRAIN_MRI_CLASSES, n_patients, 1, image_size, seed,
        name=lambda patient, image, cls, split: f"{split[:2]}-{_PREFIX[BRAIN_MRI_CLASSES[cls]]}_{patient:04d}",
        suffix=".jpg",
        split_folders=("Training", "Testing"), test_fraction=test_fraction, write_patients=False,
    )  # fmt: skip
