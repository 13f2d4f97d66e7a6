"""NIH ChestX-ray14 bounding boxes (``BBox_List_2017.csv``): read, write, attach to a datalist.

The NIH file holds 984 boxes on 880 images for 8 findings. Its header is
``Image Index,Finding Label,Bbox [x,y,w,h],,,``: the brackets hold commas, so a CSV reader sees ``Bbox [x``,
``y``, ``w``, ``h]`` and three empty fields, and every data row ends with three empty fields too. One finding is
spelled differently from ``Data_Entry_2017.csv``: ``Infiltrate`` here, ``Infiltration`` there;
:data:`BBOX_FINDING_NAMES` maps it (and accepts the 14 names of
:data:`~common.data.chestxray14.CHESTXRAY14_FINDINGS`); any other name is refused with its line.

Coordinate convention: ``x``, ``y`` are the column and row of the box's top-left corner and ``w``, ``h`` its width and
height, in pixels of the **stored image** (1024 px for the real NIH PNGs; the synthetic generator writes boxes in its
own image size). The box covers ``[x, x + w] x [y, y + h]`` in continuous pixel coordinates, where pixel ``(r, c)``
spans ``[c, c + 1) x [r, r + 1)``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from common.data.chestxray14 import CHESTXRAY14_FINDINGS
from common.data.text_files import open_dataset_csv
from common.errors import DataError

__all__ = [
    "BBOX_CSV_NAME",
    "BBOX_HEADER",
    "BBOX_FINDING_NAMES",
    "FindingBox",
    "read_bbox_list",
    "format_bbox_list",
    "attach_boxes",
    "count_boxes",
]

logger = logging.getLogger(__name__)

BBOX_CSV_NAME = "BBox_List_2017.csv"
BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
#: Name in the BBox file -> name in the 14-finding vocabulary.
BBOX_FINDING_NAMES: dict[str, str] = {**{name: name for name in CHESTXRAY14_FINDINGS}, "Infiltrate": "Infiltration"}
_NIH_SPELLING = {"Infiltration": "Infiltrate"}
_BOX_COLUMNS = ["Bbox [x", "y", "w", "h]"]


@dataclass(frozen=True)
class FindingBox:
    """One box: the image file name, the finding (14-name vocabulary) and ``x, y, w, h`` in stored-image pixels."""

    image: str
    finding: str
    x: float
    y: float
    w: float
    h: float

    def as_item(self) -> dict[str, Any]:
        """The datalist form: ``{"finding": ..., "x": ..., "y": ..., "w": ..., "h": ...}``."""
        return {"finding": self.finding, "x": self.x, "y": self.y, "w": self.w, "h": self.h}


def _header_columns(header: list[str], path: Path) -> tuple[int, int, int]:
    names = [name.strip().lstrip("\ufeff") for name in header]
    try:
        image_col, label_col, box_col = names.index("Image Index"), names.index("Finding Label"), names.index("Bbox [x")
    except ValueError:
        raise DataError(f"{path}, line 1: header {','.join(names)!r}; expected {BBOX_HEADER!r}") from None
    if names[box_col:box_col + 4] != _BOX_COLUMNS:
        raise DataError(f"{path}, line 1: the box columns read {names[box_col:box_col + 4]}; expected {_BOX_COLUMNS} "
                        f"(header {BBOX_HEADER!r})")  # fmt: skip
    return image_col, label_col, box_col


def _parse_box(row: list[str], cols: tuple[int, int, int], where: str) -> FindingBox:
    image_col, label_col, box_col = cols
    if len(row) < box_col + 4:
        raise DataError(f"{where}: {len(row)} fields, expected at least {box_col + 4} "
                        f"(image, finding, x, y, w, h): {row}")  # fmt: skip
    label = row[label_col].strip()
    if label not in BBOX_FINDING_NAMES:
        raise DataError(f"{where}: unknown finding {label!r}; expected one of {', '.join(sorted(BBOX_FINDING_NAMES))}")
    try:
        x, y, w, h = (float(value) for value in row[box_col:box_col + 4])
    except ValueError:
        raise DataError(f"{where}: box {row[box_col:box_col + 4]} is not four numbers x, y, w, h") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise DataError(f"{where}: box x={x}, y={y}, w={w}, h={h}; expected finite values with w > 0 and h > 0")
    return FindingBox(row[image_col].strip(), BBOX_FINDING_NAMES[label], x, y, w, h)


def read_bbox_list(csv_path: str | os.PathLike) -> list[FindingBox]:
    """Read ``BBox_List_2017.csv`` (NIH header with bracketed columns and trailing empty fields).

    Args:
        csv_path: the CSV file.

    Returns:
        One box per data row, in file order, findings in the 14-name vocabulary (``Infiltrate`` -> ``Infiltration``).

    Raises:
        DataError: missing, empty or non-UTF-8 file, a header without the NIH columns, a short row, an unknown
            finding, or a box that is not four finite numbers with positive size (naming file and line).

    Example:
        >>> boxes = read_bbox_list("/data/nih/BBox_List_2017.csv")  # doctest: +SKIP
        >>> len(boxes), boxes[0].finding  # doctest: +SKIP
        (984, 'Atelectasis')
    """
    path = Path(csv_path)
    reader, header = open_dataset_csv(path, "ChestX-ray14 box file", f"the header {BBOX_HEADER!r}")
    cols = _header_columns(header, path)
    return [_parse_box(row, cols, f"{path}, line {reader.line_num}") for row in reader if any(f.strip() for f in row)]


def format_bbox_list(boxes: Iterable[FindingBox]) -> str:
    """``BBox_List_2017.csv`` text in NIH's format (its header, NIH spelling ``Infiltrate``, three trailing commas)."""
    rows = [BBOX_HEADER]
    for box in boxes:
        name = _NIH_SPELLING.get(box.finding, box.finding)
        rows.append(f"{box.image},{name},{box.x:g},{box.y:g},{box.w:g},{box.h:g},,,")
    return "\n".join(rows) + "\n"


def attach_boxes(datalist: Mapping[str, list[dict[str, Any]]], boxes: Iterable[FindingBox]) -> int:
    """Add ``"boxes"`` to the datalist items whose image has boxes (matched by file name); return the count attached.

    Boxes of images that are not in the datalist are left out with a warning (e.g. images in neither split list).
    """
    by_image: dict[str, list[dict[str, Any]]] = {}
    for box in boxes:
        by_image.setdefault(box.image, []).append(box.as_item())
    attached, seen = 0, set()
    for items in datalist.values():
        for item in items:
            name = PurePosixPath(str(item["image"])).name
            if name in by_image:
                item["boxes"] = list(by_image[name])
                attached += len(item["boxes"])
                seen.add(name)
    unused = sorted(set(by_image) - seen)
    if unused:
        logger.warning("%d image(s) with boxes are not in the datalist and are left out, e.g. %s", len(unused),
                       unused[:3])  # fmt: skip
    return attached


def count_boxes(datalist: Mapping[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Boxes per split (splits without boxes included, with 0)."""
    return {split: sum(len(item.get("boxes", ())) for item in items) for split, items in datalist.items()}
