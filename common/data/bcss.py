"""Adapter for the native BCSS layout (Breast Cancer Semantic Segmentation, TCGA H&E ROIs, Amgad et al. 2019).

The download holds RGB ROIs in ``rgbs_colorNormalized/`` (the download script's ``images/`` is accepted too),
one mask PNG of the same name per ROI in ``masks/`` and ``meta/gtruth_codes.tsv``. Mask pixels hold the detailed
codes 0..21 (0 ``outside_roi`` is "don't care", not a class). Masks keep their detailed codes on disk;
:class:`common.transforms.labels_remap.RemapLabels` groups them at load time with the look-up table from
:func:`build_code_lookup`, so a bundle can change the grouping without rewriting files. Training masks then read
0 = ignore (``outside_roi`` and ``exclude``), 1..K = the groups of ``class_map`` in order.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from common.data.bcss_codes import (
    BCSS_DEFAULT_CLASS_MAP,
    BCSS_GTRUTH_CODES,
    BCSS_IGNORED_LABELS,
    CODES_FILE,
    build_code_lookup,
    compare_gtruth_codes,
    load_bcss_codes,
    read_gtruth_codes,
)
from common.data.image_files import check_image_files
from common.data.masks import mask_value_counts
from common.data.splits import (
    check_nonempty_splits,
    check_patient_disjoint,
    group_by_split,
    patient_split,
    summarise_datalist,
)
from common.errors import ConfigError, DataError

__all__ = [
    "BCSS_GTRUTH_CODES",
    "BCSS_IGNORED_LABELS",
    "BCSS_DEFAULT_CLASS_MAP",
    "BCSS_IMAGE_FOLDERS",
    "MASK_FOLDER",
    "CODES_FILE",
    "read_gtruth_codes",
    "compare_gtruth_codes",
    "load_bcss_codes",
    "build_code_lookup",
    "bcss_patient_id",
    "validate_bcss_masks",
    "load_bcss_datalist",
    "summarise_bcss_datalist",
]

logger = logging.getLogger(__name__)

BCSS_IMAGE_FOLDERS = ("rgbs_colorNormalized", "images")
MASK_FOLDER = "masks"
_MASK_MODES = ("L", "P", "I", "I;16")
_BARCODE = re.compile(r"^(TCGA-[A-Z0-9]{2}-[A-Z0-9]{4})(?![A-Z0-9])", re.IGNORECASE)


def bcss_patient_id(name: str) -> str:
    """``TCGA-A1-A0SK-DX1_xmin45749_ymin25055_MPP-0.2500.png`` -> ``TCGA-A1-A0SK`` (upper case).

    Raises:
        DataError: the name does not start with a TCGA barcode.
    """
    match = _BARCODE.match(name)
    if match is None:
        raise DataError(f"{name}: no TCGA barcode at the start of the file name; expected e.g. TCGA-A1-A0SK-DX1_"
                        "xmin45749_ymin25055_MPP-0.2500.png (patient = first three fields)")  # fmt: skip
    return match.group(1).upper()


def _png_names(folder: Path) -> dict[str, Path]:
    return {path.name: path for path in folder.iterdir() if path.suffix.lower() == ".png" and path.is_file()}


def _paired_names(root: Path) -> tuple[Path, list[str]]:
    """The image folder and the sorted names present in both it and ``masks/``."""
    image_dir = next((root / name for name in BCSS_IMAGE_FOLDERS if (root / name).is_dir()), None)
    if image_dir is None or not (root / MASK_FOLDER).is_dir():
        raise DataError(f"BCSS: expected an image folder ({'/ or '.join(BCSS_IMAGE_FOLDERS)}/) and {MASK_FOLDER}/ in "
                        f"{root}; found "
                        f"{sorted(p.name for p in root.iterdir()) if root.is_dir() else 'no such folder'}")  # fmt: skip
    images, masks = _png_names(image_dir), _png_names(root / MASK_FOLDER)
    lonely = [(f"image(s) in {image_dir} without a mask in {root / MASK_FOLDER}", sorted(set(images) - set(masks))),
              (f"mask(s) in {root / MASK_FOLDER} without an image in {image_dir}", sorted(set(masks) - set(images)))]
    problems = [f"{len(names)} {what}, e.g. {names[:3]}" for what, names in lonely if names]
    if problems:
        raise DataError("BCSS: images and masks must have matching names: " + "; ".join(problems))
    if not images:
        raise DataError(f"BCSS: no .png images in {image_dir}")
    return image_dir, sorted(images)


def _open(path: Path, what: str) -> Image.Image:
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"BCSS: cannot read {what} {path} ({path.stat().st_size} bytes): {err}") from err


def _check_sizes(image: Path, mask: Path) -> None:
    """Compare sizes from the PNG headers (PIL opens lazily: no pixels are decoded)."""
    with _open(image, "image") as rgb, _open(mask, "mask") as codes:
        if rgb.size != codes.size:
            raise DataError(f"BCSS: image {image} is {rgb.size[0]}x{rgb.size[1]} but mask {mask} is "
                            f"{codes.size[0]}x{codes.size[1]} (width x height); they must match")  # fmt: skip
        if codes.mode not in _MASK_MODES:
            raise DataError(f"BCSS: mask {mask} has PIL mode {codes.mode}; expected one channel of codes {_MASK_MODES}")


def validate_bcss_masks(
    mask_paths: Sequence[str | os.PathLike], codes: Mapping[str, int] = BCSS_GTRUTH_CODES
) -> dict[str, np.ndarray]:
    """Read every mask and check that each pixel holds a code of the table.

    Returns:
        Mask path -> pixel count of each code 0..255 (int64 array of 256).

    Raises:
        DataError: an unreadable or multi-channel mask, or codes outside ``codes`` (naming the file, the
            codes found and their pixel counts, and the known codes).
    """
    known = np.zeros(256, dtype=bool)
    known[list(codes.values())] = True
    counts: dict[str, np.ndarray] = {}
    for path in mask_paths:
        count = mask_value_counts(path, "BCSS", 255, "codes 0..255")
        unknown = np.flatnonzero((count > 0) & ~known)
        if unknown.size:
            found = ", ".join(f"{code} ({count[code]} px)" for code in unknown)
            raise DataError(f"BCSS: mask {path} holds code(s) {found} not in the code table; known: "
                            f"{sorted(codes.values())}")  # fmt: skip
        counts[str(path)] = count
    return counts


def _fractions(val_fraction: float, test_fraction: float) -> dict[str, float]:
    training = 1.0 - val_fraction - test_fraction
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0 and training > 0.0):
        raise ConfigError(f"val_fraction and test_fraction must lie in [0, 1) and sum to less than 1; "
                          f"got val_fraction={val_fraction}, test_fraction={test_fraction}")  # fmt: skip
    return {"training": training, "validation": val_fraction, "test": test_fraction}


def load_bcss_datalist(
    dataset_dir: str | os.PathLike,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    seed: int = 0,
    check_images: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """Build a patient-disjoint segmentation datalist from a native BCSS folder (BCSS has no official split).

    Args:
        dataset_dir: folder holding ``rgbs_colorNormalized/`` (or ``images/``), ``masks/`` and optionally
            ``meta/gtruth_codes.tsv``.
        val_fraction: fraction of patients for validation.
        test_fraction: fraction of patients for test.
        seed: seed of the patient-wise split.
        check_images: also check that no image or mask file is empty or truncated, read every mask and reject
            codes missing from the code table. Image / mask sizes are always compared (from the PNG headers).

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``; items are ``{"image":
        "rgbs_colorNormalized/TCGA-A1-A0SK-DX1_xmin45749_ymin25055_MPP-0.2500.png", "label":
        "masks/TCGA-A1-A0SK-DX1_xmin45749_ymin25055_MPP-0.2500.png", "patient_id": "TCGA-A1-A0SK"}``.

    Raises:
        ConfigError: bad fractions.
        DataError: missing folders, unpaired names, a name without a TCGA barcode, an unreadable, empty or
            truncated image or mask, an image / mask size mismatch, a bad codes file, unknown mask codes, or an
            empty split.

    Example:
        >>> datalist = load_bcss_datalist("/data/BCSS", val_fraction=0.15, test_fraction=0.2)  # doctest: +SKIP
    """
    fractions, root = _fractions(val_fraction, test_fraction), Path(dataset_dir)
    image_dir, names = _paired_names(root)
    patients = [bcss_patient_id(name) for name in names]
    if check_images:
        pairs = ((image_dir / name, root / MASK_FOLDER / name) for name in names)
        check_image_files((path for pair in pairs for path in pair), f"BCSS {root}")
    for name in names:
        _check_sizes(image_dir / name, root / MASK_FOLDER / name)
    if check_images:
        validate_bcss_masks([root / MASK_FOLDER / name for name in names], load_bcss_codes(root))
    items = [{"image": f"{image_dir.name}/{name}", "label": f"{MASK_FOLDER}/{name}", "patient_id": patient}
             for name, patient in zip(names, patients, strict=True)]  # fmt: skip
    datalist = group_by_split(items, patient_split(patients, fractions, seed), list(fractions))
    check_patient_disjoint(datalist)
    check_nonempty_splits(datalist, {
        "validation": f"raise val_fraction (now {val_fraction}) or add patients",
        "test": f"raise test_fraction (now {test_fraction}) or add patients",
    })  # fmt: skip
    logger.info("BCSS datalist (%d patients): %s", len(set(patients)), {s: len(v) for s, v in datalist.items()})
    return datalist


def summarise_bcss_datalist(
    datalist: Mapping[str, Sequence[Mapping[str, Any]]],
    dataset_dir: str | os.PathLike,
    class_map: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """Per split: images, patients and the share of ROIs showing each class (reads and validates every mask).

    Raises:
        ConfigError: a bad ``class_map``.
        DataError: as :func:`validate_bcss_masks`.
    """
    root, codes = Path(dataset_dir), load_bcss_codes(dataset_dir)
    lut = build_code_lookup(codes, class_map)
    names = list(BCSS_DEFAULT_CLASS_MAP if class_map is None else class_map)
    presence: dict[str, list[dict[str, Any]]] = {}
    for split, items in datalist.items():
        counts = validate_bcss_masks([root / item["label"] for item in items], codes).values()
        pixels = [np.bincount(lut, weights=count, minlength=len(names) + 1) for count in counts]
        presence[split] = [{"label": (per_class[1:] > 0).astype(float).tolist(), "patient_id": item["patient_id"]}
                           for per_class, item in zip(pixels, items, strict=True)]  # fmt: skip
    return summarise_datalist(presence, names)
