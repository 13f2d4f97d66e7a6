"""Adapter for a label CSV: one row per image, ``image,label[,patient_id][,split]``, images under the dataset folder.

The form most single-label sets can be put into with one line of pandas or a spreadsheet, and the native form of some
(HAM10000's ``HAM10000_metadata.csv``: ``lesion_id,image_id,dx,...``, read directly by naming its columns:
``image_column="image_id", label_column="dx", patient_column="lesion_id", image_dir="images", image_suffix=".jpg"``).

* ``image``: path relative to ``dataset_dir`` (after ``image_dir``); ``image_suffix`` is appended to names without one.
* ``label``: the class name. Classes are the sorted distinct labels (numerically when all are integers), or
  ``classes`` in that order; label value = index.
* ``patient_id`` (optional column): images of one patient stay in one split; without it each image is its own
  patient and items carry no ``patient_id``.
* ``split`` (optional column): ``train``/``training``, ``val``/``validation``, ``test``/``testing``: the dataset's
  own split, kept; validation is drawn from training when no row says ``val``.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.data.class_folders import check_images_readable
from common.data.single_label import check_single_label_datalist, split_items
from common.data.text_files import UTF8, read_dataset_text
from common.errors import DataError

__all__ = ["SPLIT_VALUES", "load_label_csv_datalist"]

logger = logging.getLogger(__name__)

#: accepted ``split`` values (lower case) -> the split they put an image in ("train_val": validation drawn from it).
SPLIT_VALUES: dict[str, str] = {"train": "train_val", "training": "train_val", "val": "validation",
                                "validation": "validation", "test": "test", "testing": "test"}  # fmt: skip


def _class_names(labels: list[str], classes: Sequence[str] | None, csv_path: Path, lines: list[int]) -> list[str]:
    if classes is None:
        found = set(labels)
        return sorted(found, key=int) if all(v.lstrip("-").isdigit() for v in found) else sorted(found)
    unknown = [(line, label) for line, label in zip(lines, labels, strict=True) if label not in classes]
    if unknown:
        line, label = unknown[0]
        raise DataError(f"{csv_path}, line {line}: label {label!r} is not one of the classes {list(classes)} "
                        f"({len(unknown)} row(s) with unknown labels)")  # fmt: skip
    return list(classes)


def _read_rows(csv_path: Path, columns: dict[str, str | None]) -> tuple[list[dict[str, str]], list[int]]:
    """Rows as {role: value} for the roles whose column is present; the CSV line of each row."""
    reader = csv.reader(read_dataset_text(csv_path, UTF8).splitlines())
    header = [name.strip() for name in next(reader, [])]
    required = {role: name for role, name in columns.items() if role in ("image", "label")}
    missing = [name for name in required.values() if name not in header]
    if missing:
        raise DataError(f"{csv_path}, line 1: missing column(s) {missing}; header has {header}")
    for role in ("patient_id", "split"):
        if columns.get(role) and role != columns[role] and columns[role] not in header:
            raise DataError(f"{csv_path}, line 1: missing column {columns[role]!r} (named for {role}); header {header}")
    index = {role: header.index(name) for role, name in columns.items() if name and name in header}
    rows, lines = [], []
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise DataError(f"{csv_path}, line {line}: {len(row)} fields, the header has {len(header)}: {row}")
        values = {role: row[col].strip() for role, col in index.items()}
        blank = [columns[role] for role, value in values.items() if not value]
        if blank:
            raise DataError(f"{csv_path}, line {line}: blank {blank}; every row needs an image and a label"
                            f"{', and a patient_id / split when those columns exist' if len(index) > 2 else ''}")
        rows.append(values)
        lines.append(line)
    if not rows:
        raise DataError(f"{csv_path}: no data rows after the header")
    return rows, lines


def load_label_csv_datalist(
    dataset_dir: str | os.PathLike,
    csv_file: str | os.PathLike = "labels.csv",
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    check_images: bool = True,
    classes: Sequence[str] | None = None,
    *,
    image_column: str = "image",
    label_column: str = "label",
    patient_column: str = "patient_id",
    split_column: str = "split",
    image_dir: str = "",
    image_suffix: str = "",
) -> dict[str, Any]:
    """Build a single-label datalist from a label CSV (see the module docstring for the columns).

    Args:
        dataset_dir: folder the image paths start from.
        csv_file: the CSV, relative to ``dataset_dir`` or absolute.
        val_fraction: fraction of the training patients drawn for validation (without ``val`` rows).
        test_fraction: fraction of all patients drawn for test (without a ``split`` column).
        seed: seed of the patient-wise draws.
        check_images: refuse missing, empty, truncated or unreadable images, naming them.
        classes: class names in label order (every label must be one of them). Default: sorted distinct labels.
        image_column, label_column, patient_column, split_column: column names (the optional ones may be absent).
        image_dir: folder under ``dataset_dir`` prefixed to every image path (e.g. ``"images"``).
        image_suffix: appended to image names without a suffix (HAM10000's ``image_id`` + ``".jpg"``).

    Returns:
        ``{"classes": [...], "training": [{"image": "images/ISIC_0027419.jpg", "label": 2, "patient_id":
        "HAM_0000118"}], "validation": [...], "test": [...]}`` (see :mod:`common.data.single_label`).

    Raises:
        DataError: missing file or column, blank value, image listed twice, unknown split value or label (with
            file and line), missing or unreadable image, a patient in two splits, an empty split.
        ConfigError: a fraction outside [0, 1).

    Example:
        >>> datalist = load_label_csv_datalist("/data/HAM10000", "HAM10000_metadata.csv", image_column="image_id",
        ...     label_column="dx", patient_column="lesion_id", image_dir="images",
        ...     image_suffix=".jpg")  # doctest: +SKIP
        >>> datalist["classes"]  # doctest: +SKIP
        ['akiec', 'bcc', 'bkl', 'df', 'mel', 'nv', 'vasc']
    """
    root = Path(dataset_dir)
    csv_path = root / csv_file
    if not csv_path.is_file():
        raise DataError(f"label CSV not found: {csv_path}; expected columns {image_column},{label_column}"
                        f"[,{patient_column}][,{split_column}]")  # fmt: skip
    columns = {"image": image_column, "label": label_column, "patient_id": patient_column, "split": split_column}
    rows, lines = _read_rows(csv_path, columns)
    names = _class_names([row["label"] for row in rows], classes, csv_path, lines)
    label_of = {name: index for index, name in enumerate(names)}
    items: list[dict[str, Any]] = []
    official: list[str] = []
    first_line: dict[str, int] = {}
    for row, line in zip(rows, lines, strict=True):
        image = row["image"].replace("\\", "/")
        image = f"{image}{image_suffix}" if image_suffix and not Path(image).suffix else image
        image = f"{image_dir.strip('/')}/{image}" if image_dir else image
        if first_line.setdefault(image, line) != line:
            raise DataError(f"{csv_path}, line {line}: image {image!r} is listed twice (first on line "
                            f"{first_line[image]})")  # fmt: skip
        item: dict[str, Any] = {"image": image, "label": label_of[row["label"]]}
        if "patient_id" in row:
            item["patient_id"] = row["patient_id"]
        if "split" in row:
            if row["split"].lower() not in SPLIT_VALUES:
                raise DataError(f"{csv_path}, line {line}: split {row['split']!r}; expected one of "
                                f"{sorted(SPLIT_VALUES)}")  # fmt: skip
            official.append(SPLIT_VALUES[row["split"].lower()])
        items.append(item)
    if check_images:
        paths = [root / item["image"] for item in items]
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise DataError(f"{csv_path}: {len(missing)} of {len(paths)} image(s) not found, e.g. {missing[:3]}")
        check_images_readable(paths, f"label CSV {csv_path}")
    splits = split_items(items, val_fraction, test_fraction, seed, official or None)
    datalist = {"classes": names, **splits}
    check_single_label_datalist(datalist, f"label CSV {csv_path}")
    logger.info("label-CSV datalist of %s: %s", csv_path, {s: len(v) for s, v in splits.items()})
    return datalist
