"""Adapter for every 2-D MedMNIST v2 / MedMNIST+ ``.npz``: PNG files + a single-label datalist with class names.

A MedMNIST file is ``{flag}.npz`` (28 px) or ``{flag}_{64|128|224}.npz`` with keys ``train_images``,
``train_labels``, ``val_images``, ``val_labels``, ``test_images``, ``test_labels``; images are ``N x H x W`` (grey)
or ``N x H x W x 3`` (RGB) uint8, labels ``N x 1`` class indices (``N x 14`` multi-hot for ChestMNIST). The official
train / val / test split is kept. Images are written as ``images/{train,val,test}_{index:06d}.png`` (grey stays
1-channel, RGB stays RGB) so every bundle reads files; MedMNIST names no patients, so items have no ``patient_id``.

Class names are MedMNIST v2's published ``INFO[flag]["label"]`` (medmnist/info.py, v2.1.0), in label order, in
:data:`MEDMNIST_INFO`. RetinaMNIST's task is ordinal regression of 5 diabetic-retinopathy grades; here it is a
5-class classification (class names ``"0"`` .. ``"4"`` as published). ChestMNIST (multi-label) goes through
:func:`common.data.chestmnist.load_chestmnist_datalist` and keeps its 14-float labels.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from common.data.chestmnist import MEDMNIST_SPLITS, load_chestmnist_datalist, open_medmnist_npz, read_npz_array
from common.errors import ConfigError, DataError
from common.io import atomic_write_json
from common.staging import atomic_entries

__all__ = ["MedMNISTInfo", "MEDMNIST_INFO", "MEDMNIST_SIZES", "parse_medmnist_name", "load_medmnist_datalist",
           "load_medmnist_folder"]  # fmt: skip

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MedMNISTInfo:
    """What MedMNIST v2 publishes about one 2-D flag: class names (index = label), channels, task, licence."""

    classes: tuple[str, ...]
    n_channels: int
    task: str
    licence: str = "CC BY 4.0"


_ORGAN = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver", "lung-left",
          "lung-right", "pancreas", "spleen")  # fmt: skip
#: flag -> published info (medmnist/info.py of MedMNIST v2). Every 2-D flag; the 3-D ones are not images.
MEDMNIST_INFO: dict[str, MedMNISTInfo] = {
    "pathmnist": MedMNISTInfo(("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
                               "normal colon mucosa", "cancer-associated stroma",
                               "colorectal adenocarcinoma epithelium"), 3, "multi-class"),  # fmt: skip
    "chestmnist": MedMNISTInfo(("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule",
                                "pneumonia", "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis",
                                "pleural", "hernia"), 1, "multi-label, binary-class"),  # fmt: skip
    "dermamnist": MedMNISTInfo(("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                                "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi",
                                "vascular lesions"), 3, "multi-class", "CC BY-NC 4.0"),  # fmt: skip
    "octmnist": MedMNISTInfo(("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"), 1,
                             "multi-class"),  # fmt: skip
    "pneumoniamnist": MedMNISTInfo(("normal", "pneumonia"), 1, "binary-class"),
    "retinamnist": MedMNISTInfo(("0", "1", "2", "3", "4"), 3, "ordinal-regression"),
    "breastmnist": MedMNISTInfo(("malignant", "normal, benign"), 1, "binary-class"),
    "bloodmnist": MedMNISTInfo(("basophil", "eosinophil", "erythroblast",
                                "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)", "lymphocyte",
                                "monocyte", "neutrophil", "platelet"), 3, "multi-class"),  # fmt: skip
    "tissuemnist": MedMNISTInfo(("Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule",
                                 "Glomerular endothelial cells", "Interstitial endothelial cells", "Leukocytes",
                                 "Podocytes", "Proximal Tubule Segments", "Thick Ascending Limb"), 1,
                                "multi-class"),  # fmt: skip
    "organamnist": MedMNISTInfo(_ORGAN, 1, "multi-class"),
    "organcmnist": MedMNISTInfo(_ORGAN, 1, "multi-class"),
    "organsmnist": MedMNISTInfo(_ORGAN, 1, "multi-class"),
}
MEDMNIST_SIZES: tuple[int, ...] = (28, 64, 128, 224)
_3D_FLAGS = ("organmnist3d", "nodulemnist3d", "adrenalmnist3d", "fracturemnist3d", "vesselmnist3d", "synapsemnist3d")
_NAME = re.compile(r"^(?P<flag>[a-z0-9]+?)(?:_(?P<size>\d+))?\.npz$")


def _check_flag(flag: str) -> str:
    if flag in _3D_FLAGS:
        raise ConfigError(f"MedMNIST flag {flag!r} is a 3-D volume set; only the 2-D flags are images here: "
                          f"{', '.join(MEDMNIST_INFO)}")  # fmt: skip
    if flag not in MEDMNIST_INFO:
        raise ConfigError(f"unknown MedMNIST flag {flag!r}; choose from: {', '.join(MEDMNIST_INFO)}")
    return flag


def parse_medmnist_name(path: str | os.PathLike) -> tuple[str, int]:
    """``(flag, size)`` of a MedMNIST file name: ``pathmnist.npz`` -> ``("pathmnist", 28)``, ``pathmnist_64.npz`` -> 64.

    Raises:
        ConfigError: the name is not ``{flag}[_{size}].npz`` of a 2-D flag and a MedMNIST size.

    Example:
        >>> parse_medmnist_name("/data/dermamnist_224.npz")
        ('dermamnist', 224)
    """
    match = _NAME.match(Path(path).name.lower())
    if match is None:
        raise ConfigError(f"{path}: not a MedMNIST file name; expected {{flag}}.npz or {{flag}}_{{64,128,224}}.npz")
    flag, size = _check_flag(match["flag"]), int(match["size"] or 28)
    if size not in MEDMNIST_SIZES:
        raise ConfigError(f"{path}: size {size} is not a MedMNIST size {MEDMNIST_SIZES}")
    return flag, size


def _check_split(images: np.ndarray, labels: np.ndarray, prefix: str, path: Path, info: MedMNISTInfo,
                 size: int | None) -> np.ndarray:  # fmt: skip
    """Validate one split against the flag's info; returns the labels as a 1-D int array."""
    where = f"{path}, key"
    shape = "N x H x W" if info.n_channels == 1 else "N x H x W x 3"
    if images.ndim != (3 if info.n_channels == 1 else 4) or (info.n_channels == 3 and images.shape[-1] != 3):
        raise DataError(f"{where} '{prefix}_images': expected {shape} ({info.n_channels} channel(s)), "
                        f"got shape {images.shape}")  # fmt: skip
    if images.dtype != np.uint8:
        raise DataError(f"{where} '{prefix}_images': expected uint8 pixels, got {images.dtype}")
    if size is not None and images.shape[1:3] != (size, size):
        raise DataError(f"{where} '{prefix}_images': the file name says {size} px, images are {images.shape[1:3]}")
    if len(images) == 0 or len(images) != len(labels):
        raise DataError(f"{where} '{prefix}_images' has {len(images)} images and '{prefix}_labels' {len(labels)} "
                        "rows; expected the same, non-zero count")  # fmt: skip
    if labels.dtype.kind not in "iuf" or labels.ndim not in (1, 2) or (labels.ndim == 2 and labels.shape[1] != 1):
        raise DataError(f"{where} '{prefix}_labels': expected N x 1 class indices, got shape {labels.shape} "
                        f"({labels.dtype})")  # fmt: skip
    flat = labels.reshape(-1)
    bad = np.flatnonzero(~np.isin(flat, np.arange(len(info.classes))))
    if bad.size:
        raise DataError(f"{where} '{prefix}_labels', row {bad[0]}: label {flat[bad[0]].item()!r} is out of range; "
                        f"expected 0..{len(info.classes) - 1} ({bad.size} bad row(s))")  # fmt: skip
    return flat.astype(np.int64)


def _write_split(images: np.ndarray, labels: np.ndarray, prefix: str, image_dir: Path) -> list[dict[str, Any]]:
    items = []
    for index, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        name = f"{prefix}_{index:06d}.png"
        Image.fromarray(np.ascontiguousarray(pixels)).save(image_dir / name)
        items.append({"image": f"images/{name}", "label": int(label)})
    return items


def load_medmnist_datalist(
    npz_path: str | os.PathLike, output_dir: str | os.PathLike, flag: str | None = None,
    datalist_names: Sequence[str] = ("datalist.json",),
) -> dict[str, Any]:  # fmt: skip
    """Unpack a 2-D MedMNIST npz into ``output_dir/images/*.png`` and return (and write) its datalist.

    Images and datalist are replaced together (:func:`common.staging.atomic_entries`): a failed run leaves the
    previous ``images/`` and datalist as they were.

    Args:
        npz_path: e.g. ``pathmnist.npz`` or ``dermamnist_128.npz``.
        output_dir: folder receiving ``images/`` and the datalist; datalist paths are relative to it.
        flag: the MedMNIST flag; default: from the file name (a file named otherwise needs it).
        datalist_names: file names in ``output_dir`` the datalist is written to.

    Returns:
        ``{"classes": [...], "training": [{"image": "images/train_000000.png", "label": 3}], "validation": [...],
        "test": [...]}``; for ``chestmnist`` the multi-label datalist of :func:`load_chestmnist_datalist`.

    Raises:
        ConfigError: unknown or 3-D flag, a name that is not a MedMNIST name (without ``flag``).
        DataError: missing or unreadable file, missing key, wrong shape / channels / dtype / size, a label out of
            range (naming file, key and row).

    Example:
        >>> datalist = load_medmnist_datalist("/data/pathmnist_64.npz", "/data/pathmnist_64")  # doctest: +SKIP
        >>> datalist["classes"][:2], datalist["training"][0]  # doctest: +SKIP
        (['adipose', 'background'], {'image': 'images/train_000000.png', 'label': 0})
    """
    path = Path(npz_path)
    flag, size = (_check_flag(flag.lower()), None) if flag is not None else parse_medmnist_name(path)
    if flag == "chestmnist":
        return load_chestmnist_datalist(path, output_dir, datalist_names=datalist_names)
    info = MEDMNIST_INFO[flag]
    archive = open_medmnist_npz(path, datalist_names)
    datalist: dict[str, Any] = {"classes": list(info.classes)}
    with archive, atomic_entries(output_dir) as staging:
        missing = [f"{p}_{k}" for p in MEDMNIST_SPLITS for k in ("images", "labels") if f"{p}_{k}" not in archive.files]
        if missing:
            raise DataError(f"{path}: missing key(s) {missing}; found keys {sorted(archive.files)}")
        image_dir = staging / "images"
        image_dir.mkdir()
        for prefix, split in MEDMNIST_SPLITS.items():
            images, labels = (read_npz_array(archive, f"{prefix}_{kind}", path) for kind in ("images", "labels"))
            labels = _check_split(images, labels, prefix, path, info, size)
            logger.info("writing %d %s images of %s to %s", len(images), prefix, path.name, image_dir)
            datalist[split] = _write_split(images, labels, prefix, image_dir)
        for name in datalist_names:
            atomic_write_json(staging / name, datalist)
    return datalist


def load_medmnist_folder(dataset_dir: str | os.PathLike, flag: str | None = None, size: int | None = None
                         ) -> dict[str, Any]:  # fmt: skip
    """Unpack the MedMNIST npz found in ``dataset_dir`` into that folder (the embedded-dataset adapter).

    Args:
        dataset_dir: folder holding ``{flag}.npz`` / ``{flag}_{size}.npz``.
        flag: which flag's file to read; default: the folder's only MedMNIST file.
        size: which size's file to read (28, 64, 128, 224); default: the only one present.

    Returns:
        The datalist of :func:`load_medmnist_datalist` (also written to ``dataset_dir/datalist.json``).

    Raises:
        DataError: no, or more than one, matching MedMNIST file.

    Example:
        >>> load_medmnist_folder("/tmp/pathmnist", flag="pathmnist")["classes"][0]  # doctest: +SKIP
        'adipose'
    """
    root = Path(dataset_dir)
    candidates = []
    for path in sorted(root.glob("*.npz")):
        try:
            found_flag, found_size = parse_medmnist_name(path)
        except ConfigError:
            continue
        if (flag is None or found_flag == flag.lower()) and (size is None or found_size == size):
            candidates.append(path)
    if len(candidates) != 1:
        wanted = f"flag {flag or 'any'}, size {size or 'any'}"
        raise DataError(f"{root}: expected one MedMNIST file ({wanted}), found {[p.name for p in candidates]}")
    return load_medmnist_datalist(candidates[0], root)
