"""Adapter for the native CBIS-DDSM layout (TCIA DICOM tree + four case-description CSVs).

The unit is the full mammogram: CSV rows (one per abnormality) are grouped by image (patient, side, view),
across the mass and calc CSVs. An image is malignant (label ``[1.0]``, one value for a single-logit sigmoid)
when any abnormality is ``MALIGNANT``, benign (``[0.0]``) when all are ``BENIGN`` / ``BENIGN_WITHOUT_CALLBACK``.

The CSV ``image file path`` does not match the TCIA download below its first folder (other UID folders,
files named ``1-1.dcm``), so an image is found by its first path component (``Mass-Training_P_00001_LEFT_CC``)
as an exact folder name under ``CBIS-DDSM/`` (or the dataset folder) and the single DICOM beneath it;
cropped-image / ROI-mask folders (``..._1``) never match. Of several DICOMs in one folder, the one whose
``SeriesDescription`` (else series folder name) says "full mammogram images" is taken.

The CSVs are read as UTF-8 (a byte-order mark is removed): TCIA ships them as plain ASCII, so a byte that is
not UTF-8 means a damaged or re-encoded file and is reported with its line. Patient IDs are compared through
:func:`common.data.splits.normalise_patient_id` (a purely numeric ID loses its leading zeros).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from common.data.image_files import check_image_files
from common.data.splits import (
    check_nonempty_splits,
    check_patient_disjoint,
    group_by_split,
    normalise_patient_id,
    patient_split,
)
from common.data.text_files import UTF8, read_dataset_text
from common.errors import DataError

__all__ = [
    "CBIS_DDSM_CSV_FILES",
    "PATHOLOGY_LABELS",
    "FULL_MAMMOGRAM_DESCRIPTION",
    "CbisDdsmAbnormality",
    "CbisDdsmImage",
    "read_case_description",
    "group_images",
    "find_full_mammogram",
    "load_cbis_ddsm_datalist",
]

logger = logging.getLogger(__name__)

CBIS_DDSM_CSV_FILES: dict[str, tuple[str, ...]] = {
    "train": ("mass_case_description_train_set.csv", "calc_case_description_train_set.csv"),
    "test": ("mass_case_description_test_set.csv", "calc_case_description_test_set.csv"),
}
PATHOLOGY_LABELS: dict[str, float] = {"MALIGNANT": 1.0, "BENIGN": 0.0, "BENIGN_WITHOUT_CALLBACK": 0.0}
FULL_MAMMOGRAM_DESCRIPTION = "full mammogram images"
TREE_FOLDER = "CBIS-DDSM"
_REQUIRED = ("patient id", "left or right breast", "image view", "abnormality type", "pathology", "image file path")
_SIDES = {"LEFT": "L", "RIGHT": "R"}
_VIEWS = ("CC", "MLO")
_ROI_FOLDER = re.compile(r".*_(CC|MLO)_\d+$", re.IGNORECASE)


@dataclass(frozen=True)
class CbisDdsmAbnormality:
    """One CSV row: one abnormality on one full mammogram.

    ``source`` is ``"<csv>, row <n> (line <l>)"``; ``laterality`` is L/R, ``view`` CC/MLO, ``pathology`` upper
    case; ``folder`` is the first component of ``image_path`` (``image file path``, stripped, ``/``-separated).
    """

    source: str
    patient_id: str
    laterality: str
    view: str
    abnormality_type: str
    pathology: str
    folder: str
    image_path: str


@dataclass(frozen=True)
class CbisDdsmImage:
    """One full mammogram with the abnormalities of all CSV rows that point at it."""

    patient_id: str
    laterality: str
    view: str
    label: float
    abnormality_types: tuple[str, ...]
    folders: tuple[str, ...]
    image_path: str
    sources: tuple[str, ...]


def _normalise(name: str) -> str:
    """``patient_id`` / ``breast density`` / ``Image View`` -> ``patient id`` / ``breast density`` / ``image view``."""
    return " ".join(name.strip().lstrip("\ufeff").lower().replace("_", " ").split())


def _parse_row(row: dict[str, str], where: str, default_type: str) -> CbisDdsmAbnormality:
    values = {name: row[name].strip() for name in _REQUIRED}
    side, view, pathology = values["left or right breast"].upper(), values["image view"].upper(), values["pathology"]
    image_path = values["image file path"].replace("\\", "/").strip("/")
    checks = (
        (values["patient id"] != "", "an empty patient_id", "a patient id such as P_00001"),
        (image_path != "", "an empty 'image file path'", "a path like Mass-Training_P_00001_LEFT_CC/.../000000.dcm"),
        (side in _SIDES, f"side {values['left or right breast']!r}", f"one of {list(_SIDES)}"),
        (view in _VIEWS, f"image view {values['image view']!r}", f"one of {list(_VIEWS)}"),
        (pathology.upper() in PATHOLOGY_LABELS, f"pathology {pathology!r}", f"one of {list(PATHOLOGY_LABELS)}"),
    )
    for ok, found, expected in checks:
        if not ok:
            raise DataError(f"{where}: found {found}; expected {expected}")
    folder = image_path.split("/")[0]
    if _ROI_FOLDER.fullmatch(folder):
        raise DataError(
            f"{where}: 'image file path' {image_path!r} starts with {folder!r}, a cropped-image / ROI-mask folder; "
            "expected a full-mammogram folder like Mass-Training_P_00001_LEFT_CC"
        )
    kind = values["abnormality type"].lower() or default_type
    patient = normalise_patient_id(values["patient id"])
    return CbisDdsmAbnormality(where, patient, _SIDES[side], view, kind, pathology.upper(), folder, image_path)


def read_case_description(csv_path: str | os.PathLike) -> list[CbisDdsmAbnormality]:
    """Read one case-description CSV (mass or calc, train or test).

    Column names are matched case-, space- and underscore-insensitively (``breast_density`` in the mass
    CSVs, ``breast density`` in the calc ones); quoted fields may span lines (some ROI paths end in a
    newline in the released files).

    Args:
        csv_path: e.g. ``mass_case_description_train_set.csv``.

    Returns:
        One record per data row, in file order.

    Raises:
        DataError: missing file or column, bytes that are not UTF-8, a row with too few fields, an empty patient
            id or image path, an unknown side, view or pathology (naming the file, the row and the valid values).
    """
    path = Path(csv_path)
    if not path.is_file():
        raise DataError(f"CBIS-DDSM case-description CSV not found: {path}")
    default_type = "calcification" if path.name.lower().startswith("calc") else "mass"
    reader = csv.reader(io.StringIO(read_dataset_text(path, UTF8), newline=""))
    header = [_normalise(name) for name in next(reader, [])]
    missing = [name for name in _REQUIRED if name not in header]
    if missing:
        raise DataError(f"{path}, line 1: missing column(s) {missing}; header has {header}")
    records = []
    for number, row in enumerate(reader, start=1):
        where = f"{path}, row {number} (line {reader.line_num})"
        if not any(field.strip() for field in row):
            continue
        if len(row) < len(header):
            raise DataError(f"{where}: {len(row)} fields, expected {len(header)} like the header")
        records.append(_parse_row(dict(zip(header, row, strict=False)), where, default_type))
    return records


def group_images(abnormalities: Sequence[CbisDdsmAbnormality]) -> list[CbisDdsmImage]:
    """Group abnormality rows by full mammogram (patient, side, view), in order of first appearance.

    Args:
        abnormalities: rows of one official split (mass and calc CSVs together).

    Returns:
        One image per (patient, side, view): malignant (1.0) if any row is ``MALIGNANT``, else benign (0.0).
    """
    groups: dict[tuple[str, str, str], list[CbisDdsmAbnormality]] = {}
    for row in abnormalities:
        groups.setdefault((row.patient_id, row.laterality, row.view), []).append(row)
    images = []
    for (patient, side, view), rows in groups.items():
        label = max(PATHOLOGY_LABELS[row.pathology] for row in rows)
        types = tuple(sorted({row.abnormality_type for row in rows}))
        folders = tuple(dict.fromkeys(row.folder for row in rows))
        sources = tuple(row.source for row in rows)
        images.append(CbisDdsmImage(patient, side, view, label, types, folders, rows[0].image_path, sources))
    return images


def _series_description(path: Path) -> str:
    """``SeriesDescription`` of a DICOM, else the series folder name (NBIA names it after the series)."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesDescription"])
        description = str(getattr(ds, "SeriesDescription", "") or "")
    except (InvalidDicomError, OSError, ValueError, EOFError):
        description = ""
    return description or path.parent.name


def find_full_mammogram(case_dir: str | os.PathLike) -> Path | None:
    """The full-mammogram DICOM below one image folder (any depth), or None when it holds no ``.dcm``.

    Args:
        case_dir: e.g. ``CBIS-DDSM/Mass-Training_P_00001_LEFT_CC``.

    Raises:
        DataError: several DICOMs and not exactly one described as "full mammogram images" (lists them).
    """
    folder = Path(case_dir)
    found = sorted(
        Path(parent) / name for parent, _, names in os.walk(folder) for name in names if name.lower().endswith(".dcm")
    )
    if len(found) <= 1:
        return found[0] if found else None
    described = {path: _series_description(path) for path in found}
    full = [path for path, text in described.items() if FULL_MAMMOGRAM_DESCRIPTION in text.lower()]
    if len(full) == 1:
        return full[0]
    listing = "; ".join(f"{path.relative_to(folder)} ({text!r})" for path, text in described.items())
    raise DataError(
        f"{folder}: {len(found)} DICOM files and {len(full)} described as {FULL_MAMMOGRAM_DESCRIPTION!r}; "
        f"expected exactly one full mammogram: {listing}"
    )


def _case_folders(root: Path) -> dict[str, Path]:
    """Image folder name -> folder, from ``CBIS-DDSM/`` first, then the dataset folder itself."""
    index: dict[str, Path] = {}
    for tree in (folder for folder in (root / TREE_FOLDER, root) if folder.is_dir()):
        with os.scandir(tree) as entries:
            for entry in entries:
                if entry.is_dir():
                    index.setdefault(entry.name, Path(entry.path))
    return index


def _resolve(root: Path, image: CbisDdsmImage, index: dict[str, Path], check_images: bool) -> str:
    """Path of ``image``'s DICOM relative to ``root`` (POSIX); falls back to the CSV path when not checking."""
    for folder in image.folders:
        if folder in index:
            dicom = find_full_mammogram(index[folder])
            if dicom is not None:
                return dicom.relative_to(root).as_posix()
    if check_images:
        where = f"{root / TREE_FOLDER} or {root}"
        state = ["holds no .dcm file" if name in index else "not found" for name in image.folders]
        folders = ", ".join(f"{name!r} ({text})" for name, text in zip(image.folders, state, strict=True))
        raise DataError(
            f"no full-mammogram DICOM for patient {image.patient_id} {image.laterality} {image.view} "
            f"({image.sources[0]}): folder {folders} under {where}; pass check_images=False to skip this check"
        )
    return f"{TREE_FOLDER}/{image.image_path}"


def _read_split(root: Path, split: str) -> list[CbisDdsmAbnormality]:
    rows: list[CbisDdsmAbnormality] = []
    for name in CBIS_DDSM_CSV_FILES[split]:
        path = next((folder / name for folder in (root, root / "csv") if (folder / name).is_file()), None)
        if path is None:
            logger.warning("CBIS-DDSM: %s not found in %s or %s/csv; its rows are left out", name, root, root)
            continue
        rows.extend(read_case_description(path))
    return rows


def _check_train_test_disjoint(train: Sequence[CbisDdsmImage], test: Sequence[CbisDdsmImage]) -> None:
    train_source = {image.patient_id: image.sources[0] for image in train}
    shared = [image for image in test if image.patient_id in train_source]
    if shared:
        first = shared[0]
        n_shared = len({image.patient_id for image in shared})
        raise DataError(
            f"patient {first.patient_id} is in both a training CSV ({train_source[first.patient_id]}) and a test "
            f"CSV ({first.sources[0]}); {n_shared} patient(s) shared; the official split must be patient-disjoint"
        )


def _item(image: CbisDdsmImage, path: str) -> dict[str, Any]:
    side, view, types = image.laterality, image.view, list(image.abnormality_types)
    item = {"image": path, "label": [image.label], "patient_id": image.patient_id}
    return item | {"laterality": side, "view": view, "abnormality_types": types}


def load_cbis_ddsm_datalist(
    dataset_dir: str | os.PathLike, val_fraction: float = 0.1, seed: int = 0, check_images: bool = True
) -> dict[str, list[dict[str, Any]]]:
    """Build a benign-vs-malignant full-mammogram datalist from a native CBIS-DDSM folder.

    The official split is honoured: ``*_train_set.csv`` images are training (``val_fraction`` of their
    patients, drawn with ``seed``, become validation), ``*_test_set.csv`` images are test. CSVs are read
    from the dataset folder or its ``csv/`` subfolder; a missing CSV is logged and skipped.

    Args:
        dataset_dir: folder holding the CSVs and the ``CBIS-DDSM/`` DICOM tree.
        val_fraction: fraction of training patients for validation.
        seed: seed of the validation draw.
        check_images: require every image's DICOM, neither empty nor truncated (header and declared pixel
            data length checked, pixels not decoded); when False, unresolved images keep the CSV path.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``; items are ``{"image":
        "CBIS-DDSM/Mass-Training_P_00001_LEFT_CC/.../1-1.dcm", "label": [1.0], "patient_id": "P_00001",
        "laterality": "L", "view": "CC", "abnormality_types": ["mass"]}``.

    Raises:
        DataError: no CSV, a malformed row, an unknown pathology, a patient in both official splits,
            an empty split, or (``check_images``) a missing, empty or truncated DICOM.

    Example:
        >>> datalist = load_cbis_ddsm_datalist("/data/cbis-ddsm", val_fraction=0.1)  # doctest: +SKIP
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DataError(f"CBIS-DDSM folder not found: {root}")
    train, test = (group_images(_read_split(root, split)) for split in ("train", "test"))
    if not train and not test:
        expected = [name for names in CBIS_DDSM_CSV_FILES.values() for name in names]
        raise DataError(f"no CBIS-DDSM case-description CSV with rows in {root} (or {root}/csv); expected {expected}")
    _check_train_test_disjoint(train, test)
    assignment = patient_split(
        [image.patient_id for image in train], {"training": 1 - val_fraction, "validation": val_fraction}, seed
    )
    splits = group_by_split(train, assignment, ["training", "validation"]) | {"test": test}
    index = _case_folders(root)
    datalist = {
        split: [_item(image, _resolve(root, image, index, check_images)) for image in images]
        for split, images in splits.items()
    }
    if check_images:
        files = (root / item["image"] for items in datalist.values() for item in items)
        check_image_files(files, f"CBIS-DDSM {root}")
    check_patient_disjoint(datalist)
    hint = {"validation": f"raise val_fraction (now {val_fraction}) or add training patients"}
    check_nonempty_splits(datalist, hint | {"test": "add mass/calc_case_description_test_set.csv"})
    logger.info("CBIS-DDSM datalist: %s", {split: len(items) for split, items in datalist.items()})
    return datalist
