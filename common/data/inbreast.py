"""Adapter for the native INbreast layout (``AllDICOMs/*.dcm`` + ``INbreast.csv``).

DICOM files are named ``<file number>_<patient hash>_MG_<L|R>_<CC|ML|MLO>_ANON.dcm``. CSV rows join to
files by the ``File Name`` column (the number prefix). The CSV's ``Patient ID`` is blank or "removed" in
the release, so images are grouped per patient by the hash in the file name. The CSV is ``;``-separated
in the original release; ``,`` is accepted too (the separator is detected from the header line). It was
exported from a spreadsheet, so it is read as UTF-8 (byte-order mark removed) or else Windows-1252 (cp1252,
which agrees with Latin-1 on every printable character); bytes neither can decode are reported with their line.

Label: malignant (``[1.0]``) when the image's ``Bi-Rads`` is at least ``malignant_from`` (default
``"4"``, i.e. 4a, 4b, 4c, 5 and 6), else benign (``[0.0]``). There is no official split: patients are
split seeded into training / validation / test. Views ``ML`` (file names) and ``MLO`` are both reported
as ``"MLO"``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.data.image_files import check_image_files
from common.data.splits import check_nonempty_splits, check_patient_disjoint, group_by_split, patient_split
from common.data.text_files import UTF8_OR_CP1252, read_dataset_text
from common.errors import ConfigError, DataError

__all__ = [
    "BIRADS_VALUES",
    "INBREAST_CSV",
    "INBREAST_DICOM_FOLDER",
    "InbreastImage",
    "InbreastRow",
    "parse_inbreast_file_name",
    "find_inbreast_dicoms",
    "read_inbreast_csv",
    "load_inbreast_datalist",
]

logger = logging.getLogger(__name__)

BIRADS_VALUES: tuple[str, ...] = ("1", "2", "3", "4a", "4b", "4c", "5", "6")
INBREAST_CSV = "INbreast.csv"
INBREAST_DICOM_FOLDER = "AllDICOMs"
_FILE_NAME = re.compile(
    r"(?P<number>\d+)_(?P<patient>[0-9a-z]+)_(?P<modality>[a-z]+)_(?P<side>[lr])_(?P<view>cc|mlo|ml)(?:_[^.]*)?\.dcm",
    re.IGNORECASE,
)
_VIEWS = {"CC": "CC", "ML": "MLO", "MLO": "MLO"}
_REQUIRED = ("file name", "bi-rads")


@dataclass(frozen=True)
class InbreastImage:
    """What a DICOM file name says: ``20586908_6c613a14b80a8591_MG_R_CC_ANON.dcm``."""

    file_name: str
    number: str
    patient_id: str
    laterality: str
    view: str


@dataclass(frozen=True)
class InbreastRow:
    """One ``INbreast.csv`` row: ``where`` is ``"<csv>, row <n>"``; laterality / view may be ``""``."""

    where: str
    number: str
    birads: str
    laterality: str
    view: str


def parse_inbreast_file_name(name: str) -> InbreastImage | None:
    """Parse an INbreast DICOM file name; None when it does not follow the pattern.

    Example:
        >>> parse_inbreast_file_name("20586908_6c613a14b80a8591_MG_R_ML_ANON.dcm").view
        'MLO'
    """
    match = _FILE_NAME.fullmatch(name)
    if match is None:
        return None
    side, view = match["side"].upper(), _VIEWS[match["view"].upper()]
    return InbreastImage(name, str(int(match["number"])), match["patient"].lower(), side, view)


def find_inbreast_dicoms(dataset_dir: str | os.PathLike) -> dict[str, InbreastImage]:
    """Map each file number (leading zeros dropped) to its parsed ``AllDICOMs/*.dcm`` file name.

    Args:
        dataset_dir: folder holding ``AllDICOMs/``; ``.dcm`` files not following the pattern are ignored.

    Raises:
        DataError: ``AllDICOMs/`` missing, or two files with one number.
    """
    folder = Path(dataset_dir) / INBREAST_DICOM_FOLDER
    if not folder.is_dir():
        raise DataError(f"INbreast DICOM folder not found: {folder}")
    found: dict[str, InbreastImage] = {}
    odd: list[str] = []
    for path in sorted(folder.iterdir()):
        if not path.name.lower().endswith(".dcm"):
            continue
        image = parse_inbreast_file_name(path.name)
        if image is None:
            odd.append(path.name)
            continue
        previous = found.setdefault(image.number, image)
        if previous is not image:
            raise DataError(f"{folder}: file number {image.number} used twice: {previous.file_name} and {path.name}")
    if odd:
        logger.warning(
            "%s: %d .dcm file(s) not named <number>_<hash>_MG_<L|R>_<CC|ML>_ANON.dcm are ignored, e.g. %s",
            folder, len(odd), odd[:3],
        )  # fmt: skip
    return found


def _normalise_birads(value: str, where: str) -> str:
    text = value.strip().lower()
    if text not in BIRADS_VALUES:
        raise DataError(f"{where}: unknown Bi-Rads value {value!r}; expected one of {', '.join(BIRADS_VALUES)}")
    return text


def _delimiter(header: str, path: Path) -> str:
    counts = {";": header.count(";"), ",": header.count(",")}
    if not any(counts.values()):
        raise DataError(f"{path}, line 1: expected a ';'- or ','-separated header, found {header!r}")
    return max(counts, key=lambda sep: counts[sep])


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"INbreast label file not found: {path}")
    return read_dataset_text(path, UTF8_OR_CP1252)  # the release was exported from a spreadsheet


def _parse_row(fields: dict[str, str], where: str) -> InbreastRow:
    number = fields["file name"].strip()
    if re.fullmatch(r"\d+(\.0*)?", number) is None:  # spreadsheets may write 22678622 as 22678622.0
        raise DataError(f"{where}: 'File Name' is {number!r}; expected the file number, e.g. 20586908")
    birads = _normalise_birads(fields["bi-rads"], where)
    side = fields.get("laterality", "").strip().upper()
    view = fields.get("view", "").strip().upper()
    if side not in {"", "L", "R"} or view not in {"", *_VIEWS}:
        raise DataError(f"{where}: Laterality {side!r} / View {view!r}; expected L or R / CC or MLO (or blank)")
    return InbreastRow(where, str(int(float(number))), birads, side, _VIEWS.get(view, ""))


def read_inbreast_csv(csv_path: str | os.PathLike) -> list[InbreastRow]:
    """Read ``INbreast.csv`` (``;``- or ``,``-separated, detected from the header).

    Args:
        csv_path: the CSV file; needs the columns ``File Name`` and ``Bi-Rads`` (case-insensitive);
            ``Laterality`` and ``View`` are read when present.

    Returns:
        One record per non-blank data row, in file order.

    Raises:
        DataError: missing file or column, bytes neither UTF-8 nor cp1252 (naming the line), too few fields, a
            bad ``File Name``, an unknown ``Bi-Rads`` value or a repeated file number (naming the file and the row).

    Example:
        >>> rows = read_inbreast_csv("/data/INbreast/INbreast.csv")  # doctest: +SKIP
        >>> rows[0].birads  # doctest: +SKIP
        '2'
    """
    path = Path(csv_path)
    text = _read_text(path)
    first_line = text.splitlines()[0] if text.strip() else ""
    reader = csv.reader(io.StringIO(text), delimiter=_delimiter(first_line, path))
    header = [" ".join(name.strip().lower().split()) for name in next(reader)]
    missing = [name for name in _REQUIRED if name not in header]
    if missing:
        raise DataError(f"{path}, line 1: missing column(s) {missing}; header has {header}")
    width = max(header.index(name) for name in _REQUIRED) + 1
    rows: list[InbreastRow] = []
    first_row: dict[str, str] = {}
    for number, fields in enumerate(reader, start=1):
        where = f"{path}, row {number} (line {reader.line_num})"
        if not any(field.strip() for field in fields):
            continue
        if len(fields) < width:
            raise DataError(f"{where}: {len(fields)} fields, expected at least {width} (header: {header})")
        row = _parse_row(dict(zip(header, fields, strict=False)), where)
        if row.number in first_row:
            raise DataError(f"{where}: File Name {row.number} repeats ({first_row[row.number]})")
        first_row[row.number] = where
        rows.append(row)
    return rows


def _checked_fractions(val_fraction: float, test_fraction: float) -> dict[str, float]:
    training = 1.0 - val_fraction - test_fraction
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0 and training > 0.0):
        raise ConfigError(
            f"val_fraction and test_fraction must lie in [0, 1) and sum to less than 1; "
            f"got val_fraction={val_fraction}, test_fraction={test_fraction}"
        )
    return {"training": training, "validation": val_fraction, "test": test_fraction}


def _threshold(malignant_from: str) -> int:
    value = str(malignant_from).strip().lower()
    value = "4a" if value == "4" else value
    if value not in BIRADS_VALUES:
        raise ConfigError(f"unknown malignant_from {malignant_from!r}; choose from: 4, {', '.join(BIRADS_VALUES)}")
    return BIRADS_VALUES.index(value)


def _join(row: InbreastRow, dicoms: dict[str, InbreastImage], folder: Path) -> InbreastImage:
    image = dicoms.get(row.number)
    if image is None:
        raise DataError(
            f"{row.where}: File Name {row.number} has no DICOM in {folder}; expected a file named "
            f"{row.number}_<patient hash>_MG_<L|R>_<CC|ML>_ANON.dcm"
        )
    for name, csv_value, file_value in (
        ("Laterality", row.laterality, image.laterality),
        ("View", row.view, image.view),
    ):
        if csv_value and csv_value != file_value:
            raise DataError(f"{row.where}: {name} {csv_value!r} but the DICOM {image.file_name} says {file_value!r}")
    return image


def load_inbreast_datalist(
    dataset_dir: str | os.PathLike,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    seed: int = 0,
    malignant_from: str = "4",
    check_images: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """Build a patient-disjoint benign-vs-malignant datalist from a native INbreast folder.

    Args:
        dataset_dir: folder holding ``INbreast.csv`` and ``AllDICOMs/``.
        val_fraction: fraction of patients for validation.
        test_fraction: fraction of patients for test.
        seed: seed of the patient-wise split.
        malignant_from: lowest BI-RADS counted malignant: ``"4"`` (= ``"4a"``), ``"4b"``, ``"5"``, ...
        check_images: verify that every listed DICOM is neither empty nor truncated (header and declared pixel
            data length; pixels are not decoded).

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``; items are ``{"image":
        "AllDICOMs/<file>.dcm", "label": [1.0], "patient_id": "<hash>", "laterality": "R", "view": "CC",
        "birads": "4c"}``. DICOMs without a CSV row are left out with a warning.

    Raises:
        ConfigError: bad fractions or ``malignant_from``.
        DataError: missing CSV / folder, bad rows, a CSV row without its DICOM, (``check_images``) an empty or
            truncated DICOM, or an empty split.

    Example:
        >>> datalist = load_inbreast_datalist("/data/INbreast", malignant_from="4")  # doctest: +SKIP
    """
    fractions, threshold = _checked_fractions(val_fraction, test_fraction), _threshold(malignant_from)
    root = Path(dataset_dir)
    rows = read_inbreast_csv(root / INBREAST_CSV)
    dicoms = find_inbreast_dicoms(root)
    images = [_join(row, dicoms, root / INBREAST_DICOM_FOLDER) for row in rows]
    if check_images:
        check_image_files((root / INBREAST_DICOM_FOLDER / image.file_name for image in images), f"INbreast {root}")
    unlisted = len(dicoms) - len(images)
    if unlisted:
        logger.warning("INbreast: %d DICOM(s) have no row in %s and are left out", unlisted, INBREAST_CSV)
    items: list[dict[str, Any]] = [
        {
            "image": f"{INBREAST_DICOM_FOLDER}/{image.file_name}",
            "label": [float(BIRADS_VALUES.index(row.birads) >= threshold)],
            "patient_id": image.patient_id,
            "laterality": image.laterality,
            "view": image.view,
            "birads": row.birads,
        }
        for row, image in zip(rows, images, strict=True)
    ]
    assignment = patient_split([item["patient_id"] for item in items], fractions, seed)
    datalist = group_by_split(items, assignment, list(fractions))
    check_patient_disjoint(datalist)
    check_nonempty_splits(
        datalist,
        {
            "validation": f"raise val_fraction (now {val_fraction}) or add patients",
            "test": f"raise test_fraction (now {test_fraction}) or add patients",
        },
    )
    logger.info("INbreast datalist: %s", {split: len(entries) for split, entries in datalist.items()})
    return datalist
