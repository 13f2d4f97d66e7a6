"""Adapter for class-folder datasets: ``root/<class>/<image>``, optionally split as ``root/Training|Testing/<class>/``.

The layout most public single-label sets are shipped in, or are easily put into:

* ``root/<class>/<image>``: Kvasir v2 (``kvasir-dataset-v2/polyps/*.jpg``, 8 classes), a HAM10000 / ISIC archive
  sorted into one folder per diagnosis; no official split, so test and validation are drawn patient-wise.
* ``root/<split>/<class>/<image>`` with split folders named ``Training`` / ``Testing`` (also ``train`` / ``test``,
  and an optional ``val`` / ``validation``, any case): the brain-tumour MRI set (``Training/glioma/Tr-gl_0010.jpg``,
  ``Testing/notumor/Te-no_0010.jpg``). The official test split is kept; validation is drawn from the training
  folder (patient-wise) unless a validation folder exists.

An optional ``patients.csv`` at the root (header ``image,patient_id``) maps images (paths relative to the root, or
bare file names when those are unique) to patients; every image must then be listed and splits are
patient-disjoint. Without it each image is its own patient and items carry no ``patient_id``.

Classes are the class-folder names, sorted (label = index), unless ``classes`` fixes the order. Image files are
``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.tif`` and ``.tiff``; hidden files and folders (``.DS_Store``, staging
folders) are skipped, any other file is skipped with a warning.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from common.data.image_files import check_image_files
from common.data.single_label import check_single_label_datalist, split_items
from common.data.text_files import UTF8, read_dataset_text
from common.errors import DataError

__all__ = ["CLASS_FOLDER_SUFFIXES", "PATIENTS_CSV", "SPLIT_FOLDERS", "check_images_readable",
           "read_patients_csv", "load_class_folders_datalist"]  # fmt: skip

logger = logging.getLogger(__name__)

CLASS_FOLDER_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
PATIENTS_CSV = "patients.csv"
#: lower-case split-folder name -> split it holds ("train_val": validation is drawn from it).
SPLIT_FOLDERS: dict[str, str] = {"training": "train_val", "train": "train_val", "validation": "validation",
                                 "val": "validation", "testing": "test", "test": "test"}  # fmt: skip
_JUNK = {"thumbs.db", "desktop.ini"}


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_images(folder: Path) -> list[Path]:
    """Image files under one class folder (recursively), sorted; an empty folder raises naming it."""
    images, skipped = [], []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if path.suffix.lower() in CLASS_FOLDER_SUFFIXES:
            images.append(path)
        elif path.name.lower() not in _JUNK:
            skipped.append(path.name)
    if skipped:
        logger.warning("%s: skipped %d non-image file(s), e.g. %s", folder, len(skipped), skipped[:3])
    if not images:
        raise DataError(f"class folder {folder} holds no image ({', '.join(CLASS_FOLDER_SUFFIXES)}); remove it "
                        "or fill it")  # fmt: skip
    return images


def _split_layout(root: Path) -> dict[str, list[Path]]:
    """Top folder -> its class folders; the top folder is ``root`` itself unless split folders are used."""
    tops = _subfolders(root)
    if not tops:
        raise DataError(f"{root}: no class folders; expected root/<class>/<image> or root/Training/<class>/<image>")
    split_named = [p for p in tops if p.name.lower() in SPLIT_FOLDERS]
    if not split_named:
        return {"": tops}
    if len(split_named) != len(tops):
        others = [p.name for p in tops if p not in split_named]
        raise DataError(f"{root}: split folders {[p.name for p in split_named]} beside other folders {others}; "
                        "use either root/<class>/ or root/<split>/<class>/, not both")  # fmt: skip
    kinds = [SPLIT_FOLDERS[p.name.lower()] for p in split_named]
    if "train_val" not in kinds or "test" not in kinds or len(set(kinds)) != len(kinds):
        raise DataError(f"{root}: split folders {[p.name for p in split_named]}; expected one training folder "
                        "(Training/train), one test folder (Testing/test) and at most one validation folder")
    layout = {p.name: _subfolders(p) for p in split_named}
    for name, classes in layout.items():
        if not classes:
            raise DataError(f"{root / name}: no class folders inside the split folder")
    return layout


def read_patients_csv(csv_path: str | os.PathLike) -> dict[str, str]:
    """Read ``patients.csv`` (header ``image,patient_id``) into image -> patient id.

    Raises:
        DataError: missing column, blank value or an image listed twice (naming file and line).

    Example:
        >>> read_patients_csv("/data/derm/patients.csv")  # doctest: +SKIP
        {'melanoma/ISIC_0024306.jpg': 'HAM_0000118', ...}
    """
    path = Path(csv_path)
    reader = csv.reader(read_dataset_text(path, UTF8).splitlines())
    header = [name.strip().lstrip("\ufeff") for name in next(reader, [])]
    missing = [name for name in ("image", "patient_id") if name not in header]
    if missing:
        raise DataError(f"{path}, line 1: missing column(s) {missing}; header has {header}, expected image,patient_id")
    image_col, pid_col = header.index("image"), header.index("patient_id")
    mapping: dict[str, str] = {}
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(image_col, pid_col) or not row[image_col].strip() or not row[pid_col].strip():
            raise DataError(f"{path}, line {line}: expected an image and a patient_id, got {row}")
        image = row[image_col].strip().replace("\\", "/")
        if image in mapping:
            raise DataError(f"{path}, line {line}: image {image!r} is listed twice")
        mapping[image] = row[pid_col].strip()
    return mapping


def _patient_of(relative: list[str], mapping: dict[str, str], csv_path: Path) -> list[str]:
    """Patient of each image: by its path relative to the root, else by its file name when that is unique."""
    names: dict[str, list[str]] = {}
    for rel in relative:
        names.setdefault(rel.rsplit("/", 1)[-1], []).append(rel)
    found: list[str] = []
    unlisted: list[str] = []
    for rel in relative:
        name = rel.rsplit("/", 1)[-1]
        pid = mapping.get(rel, mapping.get(name) if len(names[name]) == 1 else None)
        if pid is None:
            unlisted.append(rel)
        found.append(pid or "")
    if unlisted:
        raise DataError(f"{csv_path}: {len(unlisted)} image(s) have no patient, e.g. {unlisted[:3]}; list every "
                        "image (path relative to the dataset folder, or a unique file name) with its patient_id")
    return found


def check_images_readable(paths: Sequence[Path], owner: str) -> None:
    """Refuse empty, truncated or undecodable image files, naming them (header read, pixels not decoded).

    Raises:
        DataError: naming the first bad file and what is wrong with it.
    """
    check_image_files(paths, owner)
    for path in paths:
        try:
            with Image.open(path) as image:
                image.size  # noqa: B018 - the header is parsed on open; touching size makes that explicit
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise DataError(f"{owner}: image {path} cannot be read ({err})") from err


def load_class_folders_datalist(
    dataset_dir: str | os.PathLike,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    check_images: bool = True,
    classes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Build a single-label datalist from ``root/<class>/<image>`` or ``root/<Training|Testing>/<class>/<image>``.

    Args:
        dataset_dir: the dataset's top folder.
        val_fraction: fraction of the (training) patients drawn for validation, when there is no validation folder.
        test_fraction: fraction of all patients drawn for test, when there are no split folders.
        seed: seed of the patient-wise draws.
        check_images: refuse empty, truncated or unreadable image files (header read only), naming them.
        classes: class names in label order; must be exactly the class folders found. Default: sorted names.

    Returns:
        ``{"classes": [...], "training": [...], "validation": [...], "test": [...]}`` with items
        ``{"image": "melanoma/ISIC_0000001.jpg", "label": 1, "patient_id": "HAM_0000118"}`` (``patient_id`` only
        with ``patients.csv``); see :mod:`common.data.single_label`.

    Raises:
        DataError: no class folders, an empty class folder (named), mixed split and class folders, ``classes`` not
            matching the folders, a bad or incomplete ``patients.csv``, a patient in two splits, an empty split,
            an unreadable image (named).
        ConfigError: a fraction outside [0, 1).

    Example:
        >>> datalist = load_class_folders_datalist("/data/brain_tumor_mri")  # doctest: +SKIP
        >>> datalist["classes"]  # doctest: +SKIP
        ['glioma', 'meningioma', 'notumor', 'pituitary']
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DataError(f"class-folder dataset not found: {root}")
    layout = _split_layout(root)
    found = sorted({folder.name for folders in layout.values() for folder in folders})
    if classes is not None and sorted(classes) != found:
        raise DataError(f"{root}: classes {list(classes)} do not match the class folders {found}")
    names = list(classes) if classes is not None else found
    label_of = {name: index for index, name in enumerate(names)}
    paths: list[Path] = []
    items: list[dict[str, Any]] = []
    official: list[str] = []
    for top, folders in layout.items():
        for folder in folders:
            for path in _class_images(folder):
                paths.append(path)
                items.append({"image": path.relative_to(root).as_posix(), "label": label_of[folder.name]})
                official.append(SPLIT_FOLDERS[top.lower()] if top else "")
    if check_images:
        check_images_readable(paths, f"class folders {root}")
    if (root / PATIENTS_CSV).is_file():
        patients = _patient_of([item["image"] for item in items], read_patients_csv(root / PATIENTS_CSV),
                               root / PATIENTS_CSV)  # fmt: skip
        for item, pid in zip(items, patients, strict=True):
            item["patient_id"] = pid
    splits = split_items(items, val_fraction, test_fraction, seed, official if "" not in layout else None)
    datalist = {"classes": names, **splits}
    check_single_label_datalist(datalist, f"class folders {root}")
    logger.info("class-folder datalist of %s: %s", root, {s: len(v) for s, v in splits.items()})
    return datalist
