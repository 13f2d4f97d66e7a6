"""Synthetic MedMNIST v2 files: ``{flag}.npz`` / ``{flag}_{size}.npz`` in the exact published format.

Keys ``train_images``, ``train_labels``, ``val_images``, ``val_labels``, ``test_images``, ``test_labels``; images
``N x H x W`` (grey flags) or ``N x H x W x 3`` (RGB flags) uint8, labels ``N x 1`` uint8 class indices, read back
by :func:`common.data.medmnist.load_medmnist_folder`. :func:`render_tissue_patch` paints a histology-like patch per
class (PathMNIST's look): class ``k`` has its own stain colour, density and size of nuclei, and fibre orientation
strength, so a small network separates the classes; grey flags get the same patches in luminance.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from common.data.medmnist import MEDMNIST_INFO, MEDMNIST_SIZES
from common.errors import ConfigError
from common.io import atomic_save

__all__ = ["render_tissue_patch", "generate_medmnist", "generate_pathmnist"]

logger = logging.getLogger(__name__)

# Per class (cycled for flags with more classes): background RGB, nuclei RGB, nuclei cover, nucleus radius (as a
# fraction of the patch), fibre strength. Loosely PathMNIST: adipose, background, debris, lymphocytes, mucus,
# smooth muscle, normal mucosa, stroma, adenocarcinoma epithelium.
_LOOKS: tuple[tuple[tuple[int, int, int], tuple[int, int, int], float, float, float], ...] = (
    ((246, 240, 244), (230, 170, 200), 0.05, 0.08, 0.0),
    ((236, 236, 236), (200, 200, 210), 0.0, 0.03, 0.0),
    ((222, 160, 180), (90, 50, 110), 0.15, 0.025, 0.0),
    ((190, 150, 200), (45, 25, 95), 0.55, 0.03, 0.0),
    ((200, 190, 225), (150, 130, 190), 0.05, 0.05, 0.0),
    ((228, 120, 160), (120, 60, 140), 0.12, 0.03, 1.0),
    ((214, 150, 200), (95, 50, 140), 0.3, 0.045, 0.0),
    ((238, 176, 200), (130, 80, 150), 0.08, 0.03, 0.6),
    ((170, 100, 170), (70, 30, 110), 0.45, 0.06, 0.0),
)


def _fibres(rng: np.random.Generator, size: int) -> np.ndarray:
    length = max(3, size // 5) | 1
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    rotation = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    field = cv2.filter2D(rng.standard_normal((size, size)).astype(np.float32), -1, kernel / kernel.sum())
    return (field - field.mean()) / (float(field.std()) + 1e-6)


def render_tissue_patch(rng: np.random.Generator, class_index: int, size: int, rgb: bool = True) -> np.ndarray:
    """A ``size`` square tissue-like patch of class ``class_index`` (RGB ``H x W x 3`` or grey ``H x W`` uint8).

    Example:
        >>> render_tissue_patch(np.random.default_rng(0), 3, 28).shape
        (28, 28, 3)
    """
    background, nucleus, cover, radius, fibre = _LOOKS[class_index % len(_LOOKS)]
    shift = 18.0 * (class_index // len(_LOOKS))  # flags with more than 9 classes: a brightness step per cycle
    image = np.asarray(background, np.float32) * rng.uniform(0.92, 1.05) - shift
    texture = fibre * _fibres(rng, size) + (1 - fibre) * cv2.GaussianBlur(
        rng.standard_normal((size, size)).astype(np.float32), (0, 0), max(size / 30, 0.5))  # fmt: skip
    image = image + 10 * texture[..., None]
    layer = np.zeros((size, size), np.float32)
    r = max(1.0, radius * size * rng.uniform(0.8, 1.2))
    for _ in range(int(-np.log1p(-cover) * size * size / (np.pi * r * r)) if cover else 0):
        y, x = rng.uniform(0, size, 2)
        cv2.circle(layer, (int(x), int(y)), int(round(r)), 1.0, -1)
    alpha = np.clip(layer, 0, 1)[..., None]
    image = image * (1 - alpha) + np.asarray(nucleus, np.float32) * alpha + rng.normal(0, 4, image.shape)
    out = np.clip(image, 0, 255).astype(np.uint8)
    return out if rgb else cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)


def generate_medmnist(
    output_dir: str | os.PathLike, flag: str = "pathmnist", size: int = 28, n_train: int = 180, n_val: int = 36,
    n_test: int = 72, seed: int = 0,
) -> Path:  # fmt: skip
    """Write ``output_dir/{flag}.npz`` (28 px) or ``{flag}_{size}.npz`` with balanced, shuffled classes.

    Args:
        output_dir: folder (created); the npz file is replaced atomically.
        flag: a single-label 2-D MedMNIST flag (class count and channels from its published info).
        size: 28, 64, 128 or 224.
        n_train, n_val, n_test: images per split (each >= 1).
        seed: an image depends only on (seed, split, index).

    Returns:
        ``output_dir`` as a Path.

    Raises:
        ConfigError: unknown, 3-D or multi-label (chestmnist) flag, a size MedMNIST does not publish, a split < 1.

    Example:
        >>> root = generate_medmnist("/tmp/pathmnist", "pathmnist", size=28)  # doctest: +SKIP
        >>> sorted(p.name for p in root.iterdir())  # doctest: +SKIP
        ['pathmnist.npz']
    """
    if flag not in MEDMNIST_INFO or flag == "chestmnist":
        raise ConfigError(f"generate_medmnist writes the single-label 2-D flags; got {flag!r}, choose from: "
                          f"{', '.join(f for f in MEDMNIST_INFO if f != 'chestmnist')}")  # fmt: skip
    if size not in MEDMNIST_SIZES:
        raise ConfigError(f"size must be one of {MEDMNIST_SIZES}, got {size}")
    counts = {"train": n_train, "val": n_val, "test": n_test}
    if min(counts.values()) < 1:
        raise ConfigError(f"every split needs at least one image, got {counts}")
    info = MEDMNIST_INFO[flag]
    n_classes, rgb = len(info.classes), info.n_channels == 3
    arrays: dict[str, np.ndarray] = {}
    for s_index, (prefix, count) in enumerate(counts.items()):
        labels = np.random.default_rng([seed, s_index]).permutation(np.arange(count) % n_classes)
        arrays[f"{prefix}_images"] = np.stack([
            render_tissue_patch(np.random.default_rng([seed, s_index, i]), int(label), size, rgb)
            for i, label in enumerate(labels)])  # fmt: skip
        arrays[f"{prefix}_labels"] = labels.astype(np.uint8)[:, None]
    root = Path(output_dir)
    name = f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"
    atomic_save(root / name, lambda tmp: np.savez_compressed(tmp, **arrays))
    logger.info("synthetic %s: %s images in %s", name, counts, root)
    return root


def generate_pathmnist(
    output_dir: str | os.PathLike, size: int = 28, n_train: int = 180, n_val: int = 36, n_test: int = 72,
    seed: int = 0,
) -> Path:  # fmt: skip
    """:func:`generate_medmnist` for ``flag="pathmnist"`` (9 colour tissue classes): the ``"pathmnist"`` layout.

    Example:
        >>> root = generate_pathmnist("/tmp/pathmnist", size=64)  # doctest: +SKIP
    """
    return generate_medmnist(output_dir, "pathmnist", size, n_train, n_val, n_test, seed)
