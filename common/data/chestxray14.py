"""Adapter for the native NIH ChestX-ray14 layout (``Data_Entry_2017.csv``, ``images*/``, official split lists).

Labels are multi-hot vectors of 14 floats in :data:`CHESTXRAY14_FINDINGS` order (the NIH order, also
used by ChestMNIST); "No Finding" is all zeros. Image paths in a datalist are relative to the dataset
folder, in POSIX form, so a datalist JSON moves with its data.

The CSV and the split lists are read as UTF-8 (a byte-order mark is removed): the NIH release is plain ASCII,
so a byte that is not UTF-8 means a damaged or re-encoded file and is reported with its line. Patient IDs are
stored without leading zeros (``"00012"`` and ``"12"`` are one patient, see
:func:`common.data.splits.normalise_patient_id`); a blank one is an error.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.data.image_files import check_image_files
from common.data.splits import (
    check_nonempty_splits,
    check_patient_disjoint,
    group_by_split,
    normalise_patient_id,
    patient_split,
    summarise_datalist,  # lives in splits (it serves every adapter); re-exported as part of this adapter's API
)
from common.data.text_files import UTF8, open_dataset_csv, read_dataset_text
from common.errors import ConfigError, DataError

__all__ = [
    "CHESTXRAY14_FINDINGS",
    "NO_FINDING",
    "CSV_NAMES",
    "ANY_FINDING",
    "binary_task_classes",
    "ChestXray14Record",
    "read_data_entry",
    "find_images",
    "read_image_list",
    "load_chestxray14_datalist",
    "summarise_datalist",
]

logger = logging.getLogger(__name__)

CHESTXRAY14_FINDINGS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)  # fmt: skip
NO_FINDING = "No Finding"
CSV_NAMES: tuple[str, ...] = ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")
_REQUIRED_COLUMNS = ("Image Index", "Finding Labels", "Patient ID", "View Position")
_OPTIONAL_COLUMNS = ("Follow-up #", "Patient Age", "Patient Gender")
_IMAGE_FOLDER = re.compile(r"images_\d+")
_FINDING_INDEX = {name: index for index, name in enumerate(CHESTXRAY14_FINDINGS)}
#: ``task`` value selecting "any finding vs No Finding", and its positive class name.
ANY_FINDING = "any"
_ANY_FINDING_CLASS = "Any finding"


@dataclass(frozen=True)
class ChestXray14Record:
    """One row of ``Data_Entry_2017.csv``.

    Attributes:
        image: image file name, e.g. ``00000001_000.png``.
        labels: 14 floats (0.0 / 1.0) in :data:`CHESTXRAY14_FINDINGS` order.
        patient_id: the ``Patient ID`` column without leading zeros (``"00001"`` -> ``"1"``).
        view: ``View Position`` (``PA`` or ``AP``).
        follow_up: ``Follow-up #`` as written, ``""`` if the column is absent.
        age: ``Patient Age`` as written, ``""`` if absent.
        gender: ``Patient Gender`` as written, ``""`` if absent.
    """

    image: str
    labels: tuple[float, ...]
    patient_id: str
    view: str
    follow_up: str = ""
    age: str = ""
    gender: str = ""


def _parse_findings(text: str, where: str, cache: dict[str, tuple[float, ...]]) -> tuple[float, ...]:
    """Turn ``Finding Labels`` (``A|B`` or ``No Finding``) into 14 floats; ``cache`` holds the few hundred combos."""
    labels = cache.get(text)
    if labels is not None:
        return labels
    vector = [0.0] * len(CHESTXRAY14_FINDINGS)
    names = [name.strip() for name in text.split("|")]
    if names != [NO_FINDING]:
        for name in names:
            if name not in _FINDING_INDEX:
                raise DataError(
                    f"{where}: unknown finding {name!r} in 'Finding Labels' {text!r}; "
                    f"valid names: {', '.join(CHESTXRAY14_FINDINGS)} or {NO_FINDING!r}"
                )
            vector[_FINDING_INDEX[name]] = 1.0
    labels = cache[text] = tuple(vector)
    return labels


def _column_indices(header: list[str], csv_path: Path) -> dict[str, int]:
    """Locate required and optional columns by name (the brackets in the header split into extra fields)."""
    names = [name.strip().lstrip("\ufeff") for name in header]
    missing = [name for name in _REQUIRED_COLUMNS if name not in names]
    if missing:
        raise DataError(f"{csv_path}, line 1: missing column(s) {missing}; header has {names}")
    return {name: names.index(name) for name in _REQUIRED_COLUMNS + _OPTIONAL_COLUMNS if name in names}


def read_data_entry(csv_path: str | os.PathLike) -> list[ChestXray14Record]:
    """Read ``Data_Entry_2017.csv`` (12 fields, trailing comma) or ``Data_Entry_2017_v2020.csv`` (11 fields).

    Args:
        csv_path: the CSV file.

    Returns:
        One record per data row, in file order.

    Raises:
        DataError: if the file is missing, empty or not UTF-8, a required column is missing, a row has too
            few fields, an image name repeats, a patient ID is blank or a finding name is unknown (with file
            and line number).

    Example:
        >>> records = read_data_entry("/data/nih/Data_Entry_2017.csv")  # doctest: +SKIP
        >>> records[0].image, records[0].labels[1]  # doctest: +SKIP
        ('00000001_000.png', 1.0)
    """
    path = Path(csv_path)
    reader, header = open_dataset_csv(path, "ChestX-ray14 label file",
                                      "a header starting with 'Image Index,Finding Labels'")
    cols = _column_indices(header, path)
    n_fields = len(header) - (1 if header[-1].strip() == "" else 0)
    image_col, label_col, pid_col, view_col = (cols[name] for name in _REQUIRED_COLUMNS)
    extra_cols = [cols.get(name) for name in _OPTIONAL_COLUMNS]
    cache: dict[str, tuple[float, ...]] = {}
    first_line: dict[str, int] = {}
    records: list[ChestXray14Record] = []
    for row in reader:
        if not row:
            continue
        line = reader.line_num
        if len(row) < n_fields:
            raise DataError(f"{path}, line {line}: {len(row)} fields, expected {n_fields} like the header: {row}")
        image = row[image_col].strip()
        if image in first_line:
            raise DataError(f"{path}, line {line}: duplicate image {image!r} (first on line {first_line[image]})")
        first_line[image] = line
        patient = row[pid_col].strip()
        if not patient:
            raise DataError(f"{path}, line {line}: blank 'Patient ID' for image {image!r}; expected the patient "
                            "number, e.g. 1 (images of one patient must stay in one split)")  # fmt: skip
        labels = _parse_findings(row[label_col], f"{path}, line {line}", cache)
        extras = ["" if col is None else row[col].strip() for col in extra_cols]
        records.append(ChestXray14Record(image, labels, normalise_patient_id(patient), row[view_col].strip(), *extras))
    return records


def _image_folders(root: Path) -> list[Path]:
    """Folders that may hold images: ``images/``, ``images_NNN/images/`` and ``images_NNN/``."""
    folders = [root / "images"] if (root / "images").is_dir() else []
    with os.scandir(root) as entries:
        numbered = sorted(entry.name for entry in entries if _IMAGE_FOLDER.fullmatch(entry.name) and entry.is_dir())
    for name in numbered:
        nested = root / name / "images"
        folders.extend([nested, root / name] if nested.is_dir() else [root / name])
    return folders


def find_images(dataset_dir: str | os.PathLike) -> dict[str, str]:
    """Map each PNG file name to its path relative to ``dataset_dir`` (POSIX form).

    Accepts ``images/*.png``, ``images_001/images/*.png`` .. and ``images_001/*.png`` side by side.
    Uses ``os.scandir`` (no per-file ``stat``), so 112,120 files take a fraction of a second.

    Args:
        dataset_dir: the dataset folder.

    Returns:
        Image file name -> path relative to ``dataset_dir``, e.g. ``images_001/images/00000001_000.png``.

    Raises:
        DataError: if ``dataset_dir`` is not a folder or one image name occurs in two folders.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DataError(f"ChestX-ray14 folder not found: {root}")
    found: dict[str, str] = {}
    for folder in _image_folders(root):
        prefix = folder.relative_to(root).as_posix()
        with os.scandir(folder) as entries:
            for entry in entries:
                if not entry.name.lower().endswith(".png") or not entry.is_file():
                    continue
                relative = f"{prefix}/{entry.name}"
                previous = found.setdefault(entry.name, relative)
                if previous != relative:
                    raise DataError(f"image {entry.name!r} found twice under {root}: {previous} and {relative}")
    return found


def read_image_list(list_path: str | os.PathLike) -> list[str]:
    """Read an official split list (``train_val_list.txt`` / ``test_list.txt``).

    Args:
        list_path: the list file, one image name per line (blank lines ignored).

    Returns:
        The image names in file order.

    Raises:
        DataError: if the file is missing, unreadable or not UTF-8 (naming the line).
    """
    path = Path(list_path)
    if not path.is_file():
        raise DataError(f"cannot read split list {path}: file not found")
    lines = read_dataset_text(path, UTF8).splitlines()
    return [line.strip() for line in lines if line.strip()]


def _official_split(root: Path, records: Sequence[ChestXray14Record]) -> list[str] | None:
    """Split of each record from ``train_val_list.txt`` / ``test_list.txt``, or None when neither exists."""
    lists = {"train_val": root / "train_val_list.txt", "test": root / "test_list.txt"}
    present = [path.name for path in lists.values() if path.is_file()]
    if not present:
        return None
    if len(present) == 1:
        raise DataError(f"{root}: found {present[0]} but not the other official split list; provide both or neither")
    known = {record.image for record in records}
    split_of: dict[str, str] = {}
    for split, path in lists.items():
        for number, name in enumerate(read_image_list(path), start=1):
            if name not in known:
                raise DataError(f"{path}, line {number}: image {name!r} is not in the label CSV")
            if split_of.setdefault(name, split) != split:
                raise DataError(f"image {name!r} is listed in both train_val_list.txt and test_list.txt ({path})")
    unlisted = sum(record.image not in split_of for record in records)
    if unlisted:
        logger.warning("%d image(s) of the label CSV are in neither split list and are left out", unlisted)
    return [split_of.get(record.image, "") for record in records]


def _resolve_paths(root: Path, records: Sequence[ChestXray14Record], check_images: bool) -> dict[str, str]:
    """Relative path of every record's image; missing, empty or truncated images raise when ``check_images``."""
    on_disk = find_images(root)
    missing = [record.image for record in records if record.image not in on_disk]
    if missing and check_images:
        raise DataError(
            f"{len(missing)} of {len(records)} images are missing under {root} (looked in images/ and "
            f"images_NNN[/images]/), e.g. {missing[:5]}; pass check_images=False to skip this check"
        )
    if check_images:
        check_image_files((root / on_disk[record.image] for record in records), f"ChestX-ray14 {root}")
    return {record.image: on_disk.get(record.image, f"images/{record.image}") for record in records}


def _attach_box_file(root: Path, datalist: dict[str, list[dict[str, Any]]]) -> None:
    """Attach ``BBox_List_2017.csv``'s boxes when the file is in ``root`` (see :mod:`common.data.chestxray14_boxes`)."""
    # Imported here: chestxray14_boxes takes the finding vocabulary from this module.
    from common.data.chestxray14_boxes import BBOX_CSV_NAME, attach_boxes, read_bbox_list

    if (root / BBOX_CSV_NAME).is_file():
        count = attach_boxes(datalist, read_bbox_list(root / BBOX_CSV_NAME))
        logger.info("attached %d box(es) of %s to the datalist", count, BBOX_CSV_NAME)


def _task_finding(task: str) -> str:
    """The canonical finding name of ``task`` (case-insensitive), or :data:`ANY_FINDING`."""
    if task.strip().lower() == ANY_FINDING:
        return ANY_FINDING
    by_lower = {name.lower(): name for name in CHESTXRAY14_FINDINGS}
    if task.strip().lower() in by_lower:
        return by_lower[task.strip().lower()]
    close = difflib.get_close_matches(task, [*CHESTXRAY14_FINDINGS, ANY_FINDING], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(f"unknown ChestX-ray14 task {task!r}; {hint}choose a finding ({', '.join(CHESTXRAY14_FINDINGS)}) "
                      f"or {ANY_FINDING!r}")  # fmt: skip


def binary_task_classes(task: str) -> list[str]:
    """Class names of a binary task, index = label: ``["No Finding", "Effusion"]`` or ``["No Finding", "Any finding"]``.

    Example:
        >>> binary_task_classes("effusion")
        ['No Finding', 'Effusion']
    """
    finding = _task_finding(task)
    return [NO_FINDING, _ANY_FINDING_CLASS if finding == ANY_FINDING else finding]


def _task_label(record: ChestXray14Record, finding: str, alone: bool) -> int | None:
    """1 (positive), 0 (No Finding) or None (left out) of one record for a binary task."""
    count = sum(record.labels)
    if count == 0:
        return 0
    if finding == ANY_FINDING:
        return 1
    has = record.labels[_FINDING_INDEX[finding]] == 1.0
    return 1 if has and (count == 1 or not alone) else None


def _check_both_classes(datalist: dict[str, Any], classes: list[str]) -> None:
    """A binary task needs positives and negatives in every split (AUC is undefined otherwise)."""
    for split, items in datalist.items():
        counts = [sum(item["label"] == label for item in items) for label in (0, 1)]
        if 0 in counts:
            missing = classes[counts.index(0)]
            raise DataError(f"binary task {classes[1]!r}: split {split!r} has no {missing!r} image ({counts[0]} "
                            f"{classes[0]!r}, {counts[1]} {classes[1]!r}); use more images or another finding")


def load_chestxray14_datalist(
    dataset_dir: str | os.PathLike,
    val_fraction: float = 0.1,
    seed: int = 0,
    check_images: bool = True,
    test_fraction: float = 0.2,
    *,
    task: str | None = None,
    task_alone: bool = False,
) -> dict[str, Any]:
    """Build a patient-disjoint training / validation / test datalist from a native ChestX-ray14 folder.

    The official ``train_val_list.txt`` / ``test_list.txt`` decide the test split when present;
    otherwise ``test_fraction`` of the patients is drawn as test (images in neither official list are
    left out, with a warning). Validation is ``val_fraction`` of the train_val patients. Both draws
    are seeded. The result is verified, never repaired: a patient in two splits is an error. When
    ``BBox_List_2017.csv`` is in the folder, items of images with boxes get ``"boxes"``
    (:func:`common.data.chestxray14_boxes.attach_boxes`).

    **Binary tasks** (``task``): a single-label datalist (:mod:`common.data.single_label`) of FINDING vs No Finding.
    Positives are the images whose ``Finding Labels`` include FINDING, with or without other findings (with
    ``task_alone``: only images labelled FINDING alone); negatives are the images labelled ``No Finding``; every other
    image (other findings without FINDING, and with ``task_alone`` also FINDING with others) is left out. ``task="any"``
    is any finding vs No Finding (no image left out). The splits are drawn on all images first, exactly as for the
    14-label datalist, then filtered, so a binary task's training / validation / test patients are subsets of the
    14-label ones (and the official test list is kept).

    Args:
        dataset_dir: folder holding ``Data_Entry_2017.csv`` (or the v2020 file) and the images.
        val_fraction: fraction of train_val patients for validation.
        seed: seed of the patient-wise draws.
        check_images: verify that every image exists on disk and is neither empty nor truncated.
        test_fraction: fraction of patients for test when there are no official lists.
        task: ``None`` (14 labels), a finding name (case-insensitive, e.g. ``"Effusion"``) or ``"any"``.
        task_alone: with a finding ``task``, positives are only images with that finding alone.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``; items are
        ``{"image": "images/00000001_000.png", "label": [14 floats], "patient_id": "1"}``, plus
        ``"boxes": [{"finding": "Mass", "x": .., "y": .., "w": .., "h": ..}]`` for images with boxes. With ``task``:
        ``{"classes": ["No Finding", "Effusion"], "training": [{"image": ..., "label": 1, "patient_id": "1"}], ...}``.

    Raises:
        ConfigError: an unknown ``task`` (with the closest name).
        DataError: on a missing CSV, bad rows or lists, a patient in two splits, an empty split,
            (``check_images``) missing, empty or truncated images, or a bad ``BBox_List_2017.csv`` row.

    Example:
        >>> datalist = load_chestxray14_datalist("/data/nih", val_fraction=0.1)  # doctest: +SKIP
        >>> sorted(datalist)  # doctest: +SKIP
        ['test', 'training', 'validation']
    """
    root = Path(dataset_dir)
    finding = _task_finding(task) if task is not None else None
    csv_path = next((root / name for name in CSV_NAMES if (root / name).is_file()), None)
    if csv_path is None:
        raise DataError(f"no ChestX-ray14 label file in {root}: expected one of {list(CSV_NAMES)}")
    records = read_data_entry(csv_path)
    first = _official_split(root, records)
    if first is None:
        test_split = {"train_val": 1 - test_fraction, "test": test_fraction}
        first = patient_split([r.patient_id for r in records], test_split, seed)
    groups = group_by_split(records, first, ["train_val", "test", ""])  # "": in neither official list
    train_val = groups["train_val"]
    val_split = {"training": 1 - val_fraction, "validation": val_fraction}
    second = patient_split([r.patient_id for r in train_val], val_split, seed)
    splits = group_by_split(train_val, second, ["training", "validation"]) | {"test": groups["test"]}
    if finding is not None:
        labelled = {split: [(r, _task_label(r, finding, task_alone)) for r in items] for split, items in splits.items()}
        splits = {split: [r for r, label in pairs if label is not None] for split, pairs in labelled.items()}
        label_of = {r.image: label for pairs in labelled.values() for r, label in pairs if label is not None}
    paths = _resolve_paths(root, [r for items in splits.values() for r in items], check_images)
    datalist: dict[str, Any] = {
        split: [{"image": paths[r.image], "label": list(r.labels) if finding is None else label_of[r.image],
                 "patient_id": r.patient_id} for r in items]
        for split, items in splits.items()
    }  # fmt: skip
    _attach_box_file(root, datalist)
    check_patient_disjoint(datalist)
    check_nonempty_splits(
        datalist,
        {
            "training": "lower val_fraction / test_fraction or add images",
            "validation": f"raise val_fraction (now {val_fraction}) or add patients",
            "test": f"raise test_fraction (now {test_fraction}) or check test_list.txt",
        },
    )
    if finding is not None:
        _check_both_classes(datalist, binary_task_classes(finding))
    logger.info("ChestX-ray14 datalist%s: %s", f" (task {finding})" if finding else "",
                {split: len(items) for split, items in datalist.items()})  # fmt: skip
    return datalist if task is None else {"classes": binary_task_classes(task), **datalist}
