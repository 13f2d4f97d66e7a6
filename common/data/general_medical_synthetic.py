"""Synthetic sources for the embedded stage-2 dataset that no public-layout generator writes.

* :func:`write_synthetic_chestmnist`: a ChestMNIST-style ``.npz`` (grey, 14 multi-hot NIH labels) rendered by the
  chest X-ray generator, so its findings merge with a ChestX-ray14 source's (``xray/Effusion`` ...).
* :func:`write_synthetic_mammo_folder`: ``root/<benign|malignant>/*.dcm`` 16-bit DICOM mammograms, a class-folder
  source whose label is the appearance of its finding (round mass / coarse calcifications vs spiculated mass /
  clustered micro-calcifications).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from common.data.synthetic_cxr import render_chest, sample_cases
from common.data.synthetic_mammo import write_mammogram_dicom
from common.data.synthetic_mammo_render import FINDING_KINDS, MammoFinding, render_mammogram
from common.errors import ConfigError
from common.io import atomic_directory, atomic_save

__all__ = ["write_synthetic_chestmnist", "write_synthetic_mammo_folder", "MAMMO_FOLDER_CLASSES"]

logger = logging.getLogger(__name__)

MAMMO_FOLDER_CLASSES = ("benign", "malignant")
_NPZ_SPLITS = (("train", 0.7), ("val", 0.15), ("test", 0.15))


def write_synthetic_chestmnist(
    path: str | os.PathLike, n_images: int = 60, image_size: int = 28, seed: int = 0, prevalence: float = 0.25
) -> Path:
    """Write a ChestMNIST-layout npz: ``{train,val,test}_images`` (N x S x S uint8) and ``_labels`` (N x 14 uint8).

    Args:
        path: the ``.npz`` file to write.
        n_images: images over the three splits (70 / 15 / 15 %, each at least one).
        image_size: side in pixels (MedMNIST uses 28, 64, 128 or 224).
        seed: seed of labels and pixels.
        prevalence: probability of each finding per image.

    Raises:
        ConfigError: fewer than 3 images.
    """
    if n_images < 3:
        raise ConfigError(f"a synthetic ChestMNIST file needs n_images >= 3 (one per split), got {n_images}")
    cases = sample_cases(n_images, (1, 1), prevalence, seed)
    counts = [max(1, round(n_images * fraction)) for _, fraction in _NPZ_SPLITS[1:]]
    bounds = [0, n_images - sum(counts), n_images - counts[1], n_images]
    arrays: dict[str, np.ndarray] = {}
    for (prefix, _), start, stop in zip(_NPZ_SPLITS, bounds[:-1], bounds[1:], strict=True):
        chosen = cases[start:stop]
        arrays[f"{prefix}_images"] = np.stack([render_chest(case.labels, np.random.default_rng([seed, index]),
                                                            image_size) for index, case in enumerate(chosen, start)])
        arrays[f"{prefix}_labels"] = np.asarray([case.labels for case in chosen], dtype=np.uint8)
    out = Path(path)
    atomic_save(out, lambda tmp: np.savez_compressed(tmp, **arrays))
    logger.info("synthetic ChestMNIST: %d images of %d px in %s", n_images, image_size, out)
    return out


def write_synthetic_mammo_folder(
    root: str | os.PathLike, n_images: int = 24, image_size: int = 64, seed: int = 0
) -> Path:
    """Write ``root/benign/*.dcm`` and ``root/malignant/*.dcm``: one finding per mammogram, half of each class.

    Args:
        root: the class-folder root (replaced as a whole).
        n_images: images over both classes (at least 2).
        image_size: image height in pixels (at least 64; the width is three quarters of it).
        seed: seed of breasts, findings and pixels.

    Raises:
        ConfigError: fewer than 2 images or ``image_size < 64``.
    """
    if n_images < 2:
        raise ConfigError(f"a synthetic mammography folder needs n_images >= 2 (one per class), got {n_images}")
    out, rng = Path(root), np.random.default_rng(seed)
    with atomic_directory(out) as tmp:
        for index in range(n_images):
            malignant = index % 2 == 1
            laterality, view = str(rng.choice(["L", "R"])), str(rng.choice(["CC", "MLO"]))
            finding = MammoFinding(str(rng.choice(FINDING_KINDS)), malignant)
            pixels, _ = render_mammogram([finding], laterality, view, np.random.default_rng([seed, index]), image_size)
            name = f"MAMMO_{index:05d}"
            study, series, image = (generate_uid(entropy_srcs=[str(seed), name, part])
                                    for part in ("study", "series", "image"))  # fmt: skip
            write_mammogram_dicom(tmp / MAMMO_FOLDER_CLASSES[int(malignant)] / f"{name}.dcm", pixels, name,
                                  laterality, view, "", (study, series, image))  # fmt: skip
    logger.info("synthetic mammography folder: %d DICOMs in %s", n_images, out)
    return out
