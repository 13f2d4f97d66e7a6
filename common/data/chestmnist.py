"""Adapter for ChestMNIST ``.npz`` files (28, 64, 128, 224 px); the other 2-D flags: :mod:`common.data.medmnist`.

The arrays are unpacked once into PNG files so the bundles read every dataset the same way (a datalist
of image paths and labels). ChestMNIST labels are 14 multi-hot values in the NIH ChestX-ray14 order.
"""

from __future__ import annotations

import logging
import os
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from common.errors import ConfigError, DataError
from common.io import atomic_write_json
from common.staging import atomic_entries

__all__ = ["MEDMNIST_SPLITS", "load_chestmnist_datalist", "read_npz_array", "write_medmnist_split"]

logger = logging.getLogger(__name__)

#: npz key prefix -> datalist split name.
MEDMNIST_SPLITS: dict[str, str] = {"train": "training", "val": "validation", "test": "test"}


def _read_array(archive: Any, key: str, npz_path: Path) -> np.ndarray:
    """``archive[key]``, or a DataError naming the file and key (object arrays, a damaged member)."""
    try:
        return archive[key]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        hint = " (an object array: MedMNIST arrays are numeric)" if "allow_pickle" in str(err) else ""
        raise DataError(f"{npz_path}, key {key!r}: cannot read the array{hint}: {err}") from err


read_npz_array = _read_array  # shared with common.data.medmnist (the other 2-D flags)


def _check_label_values(labels: np.ndarray, key: str, npz_path: Path) -> None:
    """Every label must be 0 or 1 (multi-hot); the first bad row and value are named."""
    if labels.dtype.kind not in "biuf":
        raise DataError(f"{npz_path}, key {key!r}: expected numeric 0/1 labels, got dtype {labels.dtype}")
    bad = ~np.isin(labels, (0, 1))  # NaN is in neither
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        row = int(rows[0])
        value = labels[row][bad[row]][0].item()
        raise DataError(f"{npz_path}, key {key!r}, row {row}: label value {value!r} is not 0 or 1 "
                        f"({len(rows)} row(s) with such values)")  # fmt: skip


def _check_arrays(images: np.ndarray, labels: np.ndarray, prefix: str, npz_path: Path, n_labels: int) -> None:
    """Validate one split's arrays against the MedMNIST layout (shapes, pixel type, 0/1 labels)."""
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
    _check_label_values(labels, f"{prefix}_labels", npz_path)


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


def open_medmnist_npz(path: Path, datalist_names: Sequence[str]) -> Any:
    """Open a MedMNIST npz (no pickles) after checking the datalist names; typed errors name the file.

    Shared by the ChestMNIST and the single-label MedMNIST adapters.

    Raises:
        ConfigError: a datalist name that is not a plain file name beside ``images/``.
        DataError: the file is missing or not a readable npz.
    """
    unfit = [n for n in datalist_names if Path(n).name != n or n in ("images", "", ".", "..")]
    if unfit:
        raise ConfigError(f"datalist names must be plain file names beside images/, got {unfit}")
    if not path.is_file():
        raise DataError(f"MedMNIST file not found: {path}")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read MedMNIST file {path}: {err}") from err


def load_chestmnist_datalist(
    npz_path: str | os.PathLike, output_dir: str | os.PathLike, n_labels: int = 14,
    datalist_names: Sequence[str] = ("datalist.json",),
) -> dict[str, list[dict[str, Any]]]:
    """Unpack a MedMNIST npz into ``output_dir/images/*.png`` and return the datalist.

    The datalist is also saved as ``output_dir/datalist.json``. Images and datalist are replaced together
    (:func:`common.staging.atomic_entries`): a failed run, or one with a bad file, leaves the previous
    ``images/`` and ``datalist.json`` as they were, never new images beside old labels. Other files in
    ``output_dir`` (the npz itself, say) are left alone.

    Args:
        npz_path: e.g. ``chestmnist.npz`` or ``chestmnist_64.npz``.
        output_dir: folder receiving ``images/`` and ``datalist.json``; paths in the datalist are relative to it.
        n_labels: expected label width (14 for ChestMNIST).
        datalist_names: file names in ``output_dir`` the datalist is written to, all with the images.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}`` with items
        ``{"image": "images/train_000000.png", "label": [14 floats], "patient_id": "train_000000"}``.

    Raises:
        DataError: if the file is missing or unreadable, a key is missing or holds an object array, the label
            width is not ``n_labels``, a label is not 0 or 1 (NaN included), or image and label counts differ
            (naming the file, the key and, for labels, the row and value).
        OutputError: ``output_dir`` cannot be written (nothing in it changed).

    Example:
        >>> datalist = load_chestmnist_datalist("chestmnist_64.npz", "/data/chestmnist_64")  # doctest: +SKIP
        >>> datalist["training"][0]["image"]  # doctest: +SKIP
        'images/train_000000.png'
    """
    path = Path(npz_path)
    out = Path(output_dir)
    archive = open_medmnist_npz(path, datalist_names)
    datalist: dict[str, list[dict[str, Any]]] = {}
    with archive, atomic_entries(out) as staging:
        for prefix in MEDMNIST_SPLITS:  # every key present before any PNG is written
            for key in (f"{prefix}_images", f"{prefix}_labels"):
                if key not in archive.files:
                    raise DataError(f"{path}: missing key {key!r}; found keys {sorted(archive.files)}")
        image_dir = staging / "images"
        image_dir.mkdir()
        for prefix, split in MEDMNIST_SPLITS.items():
            images, labels = (_read_array(archive, f"{prefix}_{kind}", path) for kind in ("images", "labels"))
            _check_arrays(images, labels, prefix, path, n_labels)
            logger.info("writing %d %s images of %s to %s", len(images), prefix, path.name, out / "images")
            datalist[split] = write_medmnist_split(images, labels, prefix, image_dir)
        for name in datalist_names:
            atomic_write_json(staging / name, datalist)
    return datalist
