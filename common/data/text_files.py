"""Decode a dataset's text file (label CSV, split list) with the encodings its real release uses.

Each adapter names the encodings its dataset is known to come in, in order of preference:

* :data:`UTF8`: UTF-8 with or without a byte-order mark. NIH ChestX-ray14 (``Data_Entry_2017.csv``, the split
  lists) and the CBIS-DDSM case-description CSVs (TCIA) are plain ASCII, a subset of UTF-8.
* :data:`UTF8_OR_CP1252`: UTF-8 (BOM optional), else Windows-1252. ``INbreast.csv`` was exported from a
  spreadsheet and may be cp1252. cp1252 rather than Latin-1: Latin-1 accepts every byte, so a file of garbage
  would "decode"; cp1252 leaves five bytes (0x81, 0x8D, 0x8F, 0x90, 0x9D) undefined and agrees with Latin-1 on
  every printable Latin-1 character.

Bytes that no accepted encoding can decode raise :class:`~common.errors.DataError` naming the file, the line,
the offending byte and the encodings tried.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.errors import DataError

__all__ = ["UTF8", "UTF8_OR_CP1252", "open_dataset_csv", "read_dataset_text"]

#: UTF-8; a leading byte-order mark (as Excel writes it) is removed.
UTF8: tuple[str, ...] = ("utf-8-sig",)
#: UTF-8 (BOM optional), else Windows-1252 (spreadsheet exports on Windows).
UTF8_OR_CP1252: tuple[str, ...] = ("utf-8-sig", "cp1252")
_NAMES = {"utf-8-sig": "UTF-8", "cp1252": "cp1252 (Windows-1252)"}


def _line(raw: bytes, err: UnicodeDecodeError) -> int:
    return raw.count(b"\n", 0, err.start) + 1


def _describe(raw: bytes, encoding: str, err: UnicodeDecodeError) -> str:
    where = f"line {_line(raw, err)}, byte 0x{raw[err.start]:02x} at offset {err.start}"
    return f"{_NAMES.get(encoding, encoding)} ({where})"


def read_dataset_text(path: str | os.PathLike, encodings: Sequence[str] = UTF8) -> str:
    """Return the text of ``path`` decoded with the first of ``encodings`` that fits every byte.

    Args:
        path: the file.
        encodings: Python codec names to try in order (see :data:`UTF8`, :data:`UTF8_OR_CP1252`).

    Raises:
        DataError: the file cannot be read, or no encoding decodes it (naming the line and byte each one
            stopped at).

    Example:
        >>> read_dataset_text("/data/INbreast/INbreast.csv", UTF8_OR_CP1252)[:10]  # doctest: +SKIP
        'Patient ID'
    """
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {file}: {err}") from err
    errors: list[tuple[str, UnicodeDecodeError]] = []
    for encoding in encodings:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError as err:
            errors.append((encoding, err))
    tried = " nor ".join(_describe(raw, encoding, err) for encoding, err in errors)
    raise DataError(
        f"{file}, line {_line(raw, errors[-1][1])}: not valid {tried}; expected text in "
        f"{' or '.join(_NAMES.get(e, e) for e in encodings)} (re-save the file as UTF-8)"
    )


def open_dataset_csv(path: str | os.PathLike, what: str, expected: str,
                     encodings: Sequence[str] = UTF8) -> tuple[Any, list[str]]:
    """A CSV reader over a dataset's text file and its header row.

    Args:
        path: the CSV file.
        what: what the file is, for messages (e.g. ``"ChestX-ray14 label file"``).
        expected: the header the file should start with, for the message when it is empty.

    Raises:
        DataError: the file is missing, not text in ``encodings`` (line named), or empty.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{what} not found: {file}")
    reader = csv.reader(io.StringIO(read_dataset_text(file, encodings), newline=""))
    header = next(reader, None)
    if header is None:
        raise DataError(f"{file} is empty; expected {expected}")
    return reader, header
