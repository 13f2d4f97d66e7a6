"""Adapter for MedMNIST ``.npz`` files (ChestMNIST and the other 2D sets of any size: 28, 64, 128, 224 px).

The arrays are unpacked once into PNG files so the bundles read every dataset the same way (a datalist
of image paths and labels). ChestMNIST labels are 14 multi-hot values in the NIH ChestX-ray14 order.
"""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from common.errors import DataError
from common.io import atomic_directory, atomic_write_json

__all__ = ["MEDMNIST_SPLITS", "load_chestmnist_datalist", "write_medmnist_split"]

logger = logging.getLogger(__name__)

#: npz key prefix -> datalist split name.
MEDMNIST_SPLITS: dict[str, str] = {"train": "training", "val": "validation", "test": "test"}


def _check_arrays(images: np.ndarray, labels: np.ndarray, prefix: str, npz_path: Path, n_labels: int) -> None:
    """Validate one split's arrays against the MedMNIST layout."""
    where = f"{npz_path}, key"
    is_grey = images.ndim == 3
    is_rgb = images.ndim == 4 and images.shape[-1] == 3
    if not (is_grey or is_rgb):
        raise DataError(f"{where} '{prefix}_images': expected N x H x W or N x H x W x 3, got shape {images.shape}")
    if images.dtype != np.uint8:
        raise DataError(f"{where} '{prefix}_images': expected uint8 pixels, got {images.dtype}")
    if labels.ndim != 2 or labels.shape[1] != n_labels:
        raise DataError(f"{where} '{prefix}_labels': expected N x {n_labels} labels, got shape {labels.shape}")
    if len(images) == 0:
        raise DataError(f"{where} '{prefix}_images' holds no images; every MedMNIST split must be non-empty")
    if len(images) != len(labels):
        raise DataError(
            f"{where} '{prefix}_images' has {len(images)} images but '{prefix}_labels' has {len(labels)} rows"
        )


def write_medmnist_split(images: np.ndarray, labels: np.ndarray, prefix: str, image_dir: Path) -> list[dict[str, Any]]:
    """Write one split's images as ``{prefix}_{index:06d}.png`` and return its datalist items.

    Args:
        images: ``N x H x W`` (grey) or ``N x H x W x 3`` (RGB) uint8.
        labels: ``N x L`` labels.
        prefix: the npz prefix (``train``, ``val``, ``test``), used in the file names.
        image_dir: folder receiving the PNGs; item paths are ``images/<name>``.

    Returns:
        Items ``{"image": "images/train_000000.png", "label": [...], "patient_id": "train_000000"}``;
        MedMNIST has no patient identifiers, so each image counts as its own patient.
    """
    items: list[dict[str, Any]] = []
    pairs = tqdm(zip(images, labels, strict=True), total=len(images), desc=f"{prefix} PNGs", disable=None, leave=False)
    for index, (pixels, label) in enumerate(pairs):
        stem = f"{prefix}_{index:06d}"
        # uint8 H x W saves as 8-bit grey, H x W x 3 as RGB.
        Image.fromarray(np.ascontiguousarray(pixels)).save(image_dir / f"{stem}.png")
        items.append({"image": f"images/{stem}.png", "label": label.astype(float).tolist(), "patient_id": stem})
    return items


def load_chestmnist_datalist(
    npz_path: str | os.PathLike, output_dir: str | os.PathLike, n_labels: int = 14
) -> dict[str, list[dict[str, Any]]]:
    """Unpack a MedMNIST npz into ``output_dir/images/*.png`` and return the datalist.

    The images folder is replaced as a whole (never left half-written) and the datalist is also saved
    as ``output_dir/datalist.json``.

    Args:
        npz_path: e.g. ``chestmnist.npz`` or ``chestmnist_64.npz``.
        output_dir: folder receiving ``images/`` and ``datalist.json``; paths in the datalist are relative to it.
        n_labels: expected label width (14 for ChestMNIST).

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}`` with items
        ``{"image": "images/train_000000.png", "label": [14 floats], "patient_id": "train_000000"}``.

    Raises:
        DataError: if the file is missing or unreadable, a key is missing, the label width is not
            ``n_labels``, or image and label counts differ (naming the file and the key).

    Example:
        >>> datalist = load_chestmnist_datalist("chestmnist_64.npz", "/data/chestmnist_64")  # doctest: +SKIP
        >>> datalist["training"][0]["image"]  # doctest: +SKIP
        'images/train_000000.png'
    """
    path = Path(npz_path)
    out = Path(output_dir)
    if not path.is_file():
        raise DataError(f"MedMNIST file not found: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read MedMNIST file {path}: {err}") from err
    datalist: dict[str, list[dict[str, Any]]] = {}
    with archive, atomic_directory(out / "images") as image_dir:
        for prefix, split in MEDMNIST_SPLITS.items():
            for key in (f"{prefix}_images", f"{prefix}_labels"):
                if key not in archive.files:
                    raise DataError(f"{path}: missing key {key!r}; found keys {sorted(archive.files)}")
            images, labels = archive[f"{prefix}_images"], archive[f"{prefix}_labels"]
            _check_arrays(images, labels, prefix, path, n_labels)
            logger.info("writing %d %s images of %s to %s", len(images), prefix, path.name, out / "images")
            datalist[split] = write_medmnist_split(images, labels, prefix, image_dir)
    atomic_write_json(out / "datalist.json", datalist)
    return datalist
