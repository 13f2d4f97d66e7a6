"""BCSS label codes: the ``meta/gtruth_codes.tsv`` table, the main-group class map and the look-up table.

Masks keep their detailed codes on disk; :class:`common.transforms.labels_remap.RemapLabels` groups them at
load time with :func:`build_code_lookup`, so a bundle can change the grouping without rewriting files.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from common.errors import ConfigError, DataError

__all__ = [
    "BCSS_GTRUTH_CODES",
    "BCSS_IGNORED_LABELS",
    "BCSS_DEFAULT_CLASS_MAP",
    "CODES_FILE",
    "read_gtruth_codes",
    "compare_gtruth_codes",
    "load_bcss_codes",
    "build_code_lookup",
]

logger = logging.getLogger(__name__)

# meta/gtruth_codes.tsv of github.com/PathologyDataScience/BCSS, verified against the file.
BCSS_GTRUTH_CODES: dict[str, int] = {
    "outside_roi": 0, "tumor": 1, "stroma": 2, "lymphocytic_infiltrate": 3, "necrosis_or_debris": 4,
    "glandular_secretions": 5, "blood": 6, "exclude": 7, "metaplasia_NOS": 8, "fat": 9, "plasma_cells": 10,
    "other_immune_infiltrate": 11, "mucoid_material": 12, "normal_acinus_or_duct": 13, "lymphatics": 14,
    "undetermined": 15, "nerve": 16, "skin_adnexa": 17, "blood_vessel": 18, "angioinvasion": 19, "dcis": 20,
    "other": 21,
}  # fmt: skip
BCSS_IGNORED_LABELS = ("outside_roi", "exclude")
_MAIN = {"tumor", "stroma", "lymphocytic_infiltrate", "plasma_cells", "other_immune_infiltrate", "necrosis_or_debris"}
# The paper's main groups; the order gives the training class indices 1..5 (0 = ignore).
BCSS_DEFAULT_CLASS_MAP: dict[str, list[str]] = {
    "tumor": ["tumor"],
    "stroma": ["stroma"],
    "inflammatory": ["lymphocytic_infiltrate", "plasma_cells", "other_immune_infiltrate"],
    "necrosis": ["necrosis_or_debris"],
    "other": [name for name in BCSS_GTRUTH_CODES if name not in _MAIN and name not in BCSS_IGNORED_LABELS],
}
CODES_FILE = "meta/gtruth_codes.tsv"


def _fields(line: str) -> list[str]:
    fields = [field.strip() for field in re.split(r"[\t,;]", line) if field.strip()]
    return fields if len(fields) > 1 else line.split()


def _code_column(fields: Sequence[str], where: str) -> int | None:
    """Index of the code column from a header row (None when ``fields`` is a data row)."""
    if any(field.lstrip("-").isdigit() for field in fields):
        return None
    names = [re.sub(r"[^a-z]", "", field.lower()) for field in fields]
    found = [index for index, name in enumerate(names) if "code" in name or name in {"value", "gt", "id"}]
    if len(fields) != 2 or len(found) != 1:
        raise DataError(f"{where}: header {list(fields)}; expected two columns such as 'label<TAB>GT_code'")
    return found[0]


def read_gtruth_codes(path: str | os.PathLike) -> dict[str, int]:
    """Read a BCSS ``gtruth_codes.tsv``: label name -> mask code.

    Tab, comma, semicolon or space separated; the header (``label  GT_code``, ``Label,code``, ...) may be
    absent and its columns in either order; blank lines and ``#`` comments are skipped.

    Raises:
        DataError: missing or empty file, a row without two fields, a code that is not an integer in 0..255,
            a repeated label or code (naming the file and line).

    Example:
        >>> read_gtruth_codes("/data/BCSS/meta/gtruth_codes.tsv")["tumor"]  # doctest: +SKIP
        1
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"BCSS codes file not found: {path}")
    rows = [(n, _fields(line)) for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")]  # fmt: skip
    if not rows:
        raise DataError(f"{path}: no rows; expected 'label<TAB>GT_code' lines such as 'tumor<TAB>1'")
    code_at = _code_column(rows[0][1], f"{path}, line {rows[0][0]}")
    rows = rows[1:] if code_at is not None else rows
    codes: dict[str, int] = {}
    for number, fields in rows:
        where = f"{path}, line {number}"
        if len(fields) != 2:
            raise DataError(f"{where}: {len(fields)} field(s) {fields}; expected 2 (label, GT_code)")
        at = code_at if code_at is not None else (0 if fields[0].isdigit() else 1)
        label, text = fields[1 - at], fields[at]
        if not text.isdigit() or int(text) > 255:
            raise DataError(f"{where}: code {text!r} for {label!r}; expected an integer in 0..255")
        if label in codes or int(text) in codes.values():
            raise DataError(f"{where}: label {label!r} or code {text} repeats; each must appear once")
        codes[label] = int(text)
    return codes


def compare_gtruth_codes(codes: Mapping[str, int], reference: Mapping[str, int] = BCSS_GTRUTH_CODES) -> list[str]:
    """Differences between a code table and the documented one, one readable line each (empty if equal)."""
    lines = [f"{label!r} (documented code {code}) is missing" for label, code in reference.items()
             if label not in codes]  # fmt: skip
    for label, code in codes.items():
        if label not in reference:
            lines.append(f"{label!r} = {code} is not a documented label")
        elif reference[label] != code:
            lines.append(f"{label!r} has code {code}, documented {reference[label]}")
    return lines


def load_bcss_codes(dataset_dir: str | os.PathLike) -> dict[str, int]:
    """The dataset's ``meta/gtruth_codes.tsv`` when present (differences from the documented table are logged
    as a warning; the file wins), else :data:`BCSS_GTRUTH_CODES`."""
    path = Path(dataset_dir) / CODES_FILE
    if not path.is_file():
        logger.info("BCSS: %s not found; using the documented codes 0..21", path)
        return dict(BCSS_GTRUTH_CODES)
    codes = read_gtruth_codes(path)
    differences = compare_gtruth_codes(codes)
    if differences:
        logger.warning("BCSS: %s differs from the documented codes (the file is used): %s", path,
                       "; ".join(differences))  # fmt: skip
    return codes


def _check_codes(codes: Mapping[str, int]) -> None:
    bad = {label: code for label, code in codes.items()
           if isinstance(code, bool) or not isinstance(code, int | np.integer) or not 0 <= code <= 255}  # fmt: skip
    if bad or len(set(codes.values())) != len(codes):
        raise ConfigError(f"codes must map each label to a distinct integer in 0..255; got {dict(codes)}")


def build_code_lookup(codes: Mapping[str, int], class_map: Mapping[str, Sequence[str]] | None = None) -> np.ndarray:
    """Look-up table: detailed mask code -> training class (group ``i`` of ``class_map`` -> ``i + 1``, rest -> 0).

    Args:
        codes: label name -> code, e.g. :func:`read_gtruth_codes` or :data:`BCSS_GTRUTH_CODES`.
        class_map: group name -> detailed label names; the order gives classes 1..K. Labels in no group
            (by default ``outside_roi`` and ``exclude``) map to 0, the ignored class. Default
            :data:`BCSS_DEFAULT_CLASS_MAP`.

    Returns:
        uint8 array of 256 entries; codes absent from ``codes`` also map to 0 (callers reject them first).

    Raises:
        ConfigError: an empty or malformed map, an unknown label (with the closest match), a label in two
            groups, ``outside_roi`` in a group, more than 255 groups, or a malformed code table.

    Example:
        >>> build_code_lookup(BCSS_GTRUTH_CODES)[[0, 1, 2, 3, 10, 7, 9]].tolist()
        [0, 1, 2, 3, 3, 0, 5]
    """
    _check_codes(codes)
    class_map = BCSS_DEFAULT_CLASS_MAP if class_map is None else class_map
    if not isinstance(class_map, Mapping) or not 0 < len(class_map) < 256:
        raise ConfigError(f"class_map must map 1..255 group names to label lists, got {class_map!r}")
    lut, group_of = np.zeros(256, dtype=np.uint8), {}
    for index, (group, labels) in enumerate(class_map.items(), start=1):
        if isinstance(labels, str) or not isinstance(labels, Sequence) or not labels:
            raise ConfigError(f"class_map group {group!r} must be a non-empty list of label names, got {labels!r}")
        for label in labels:
            if label not in codes:
                close = difflib.get_close_matches(str(label), list(codes), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ConfigError(f"unknown label {label!r} in class_map group {group!r}; {hint}choose from: "
                                  f"{', '.join(codes)}")  # fmt: skip
            if label in group_of or codes[label] == 0:
                where = f"group {group_of[label]!r}" if label in group_of else "the don't-care region (code 0)"
                raise ConfigError(f"label {label!r} of class_map group {group!r} is already {where}")
            group_of[label] = group
            lut[codes[label]] = index
    return lut
