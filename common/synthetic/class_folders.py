"""Write a synthetic class-folder dataset: ``root/[<split>/]<class>/<image>`` (+ ``patients.csv``).

The writer shared by the dermoscopy, endoscopy and brain-MRI generators; each passes a renderer drawing one image
of a class. Patients get one class each (a lesion, a colonoscopy, a scan), balanced over the classes, and 1 to
``max_images_per_patient`` images; :func:`common.data.class_folders.load_class_folders_datalist` reads the result.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from common.data.class_folders import PATIENTS_CSV
from common.errors import ConfigError, DataError
from common.io import atomic_write_text
from common.staging import atomic_entries

__all__ = ["Renderer", "MIN_IMAGE_SIZE", "write_class_folders"]

logger = logging.getLogger(__name__)

#: ``render(rng, class_index, image_size)`` -> H x W (grey) or H x W x 3 (RGB) uint8 image.
Renderer = Callable[[np.random.Generator, int, int], np.ndarray]
MIN_IMAGE_SIZE = 16


def _check_args(classes: Sequence[str], n_patients: int, max_images: int, image_size: int, suffix: str) -> None:
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ConfigError(f"need at least two distinct classes, got {list(classes)}")
    if n_patients < len(classes):
        raise ConfigError(f"n_patients must be >= the number of classes ({len(classes)}), got {n_patients}")
    if max_images < 1:
        raise ConfigError(f"max_images_per_patient must be >= 1, got {max_images}")
    if image_size < MIN_IMAGE_SIZE:
        raise ConfigError(f"image_size must be >= {MIN_IMAGE_SIZE}, got {image_size}")
    if suffix not in (".png", ".jpg"):
        raise ConfigError(f"suffix must be '.png' or '.jpg', got {suffix!r}")


def _save(path: Path, pixels: np.ndarray) -> None:
    image = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR) if pixels.ndim == 3 else pixels
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix == ".jpg" else []
    if not cv2.imwrite(str(path), image, params):
        raise DataError(f"could not write {path}")


def write_class_folders(
    output_dir: str | os.PathLike,
    render: Renderer,
    classes: Sequence[str],
    n_patients: int,
    max_images_per_patient: int,
    image_size: int,
    seed: int,
    *,
    name: Callable[[int, int, int, str], str] = lambda patient, image, cls, split: f"IMG_{patient:05d}_{image}",
    suffix: str = ".png",
    split_folders: tuple[str, str] | None = None,
    test_fraction: float = 0.25,
    write_patients: bool = True,
) -> Path:
    """Render and write a class-folder dataset; class folders (or split folders) and ``patients.csv`` are replaced.

    Args:
        output_dir: dataset folder (created).
        render: draws one image of a class (see :data:`Renderer`).
        classes: class (folder) names; patient ``p`` gets class ``p % len(classes)`` after a seeded shuffle.
        n_patients: number of patients (>= number of classes).
        max_images_per_patient: each patient has 1 to this many images (uniform).
        image_size: height and width in pixels.
        seed: a patient's images depend only on (seed, patient, image).
        name: file stem of (patient index, image index, class index, split folder or ``""``).
        suffix: ``.png`` or ``.jpg`` (JPEG quality 95).
        split_folders: ``("Training", "Testing")`` to write ``root/<split>/<class>/``; the last ``test_fraction`` of
            the patients of each class (at least one of two or more) go to the second folder.
        test_fraction: share of patients in the test folder with ``split_folders``.
        write_patients: write ``patients.csv`` (``image,patient_id``).

    Returns:
        ``output_dir`` as a Path.

    Raises:
        ConfigError: fewer than two classes or than ``len(classes)`` patients, a bad size or suffix.

    Example:
        >>> render = lambda rng, cls, size: np.full((size, size), 60 * cls, np.uint8)
        >>> root = write_class_folders("/tmp/cf", render, ["a", "b"], 4, 2, 32, seed=0)  # doctest: +SKIP
    """
    _check_args(classes, n_patients, max_images_per_patient, image_size, suffix)
    root, rng = Path(output_dir), np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n_patients) % len(classes))
    counts = rng.integers(1, max_images_per_patient + 1, n_patients)
    in_test = np.zeros(n_patients, int)  # per class, its last patients are test (at least one of two or more)
    for cls in range(len(classes)):
        members = np.flatnonzero(labels == cls)
        n_test = max(1, round(members.size * test_fraction)) if members.size >= 2 else 0
        in_test[members[members.size - n_test :]] = 1
    rows = ["image,patient_id"]
    with atomic_entries(root) as staging:
        for patient in range(n_patients):
            cls = int(labels[patient])
            split = "" if split_folders is None else split_folders[int(in_test[patient])]
            top = f"{split}/" if split else ""
            folder = staging / f"{top}{classes[cls]}"
            folder.mkdir(parents=True, exist_ok=True)
            for image in range(int(counts[patient])):
                pixels = render(np.random.default_rng([seed, patient, image]), cls, image_size)
                file = f"{name(patient, image, cls, split)}{suffix}"
                _save(folder / file, pixels)
                rows.append(f"{top}{classes[cls]}/{file},P{patient:05d}")
        if write_patients:
            atomic_write_text(staging / PATIENTS_CSV, "\n".join(rows) + "\n")
    logger.info("synthetic class folders: %d images of %d patients in %s", len(rows) - 1, n_patients, root)
    return root
