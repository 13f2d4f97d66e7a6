"""Read a MONAI datalist JSON (or a folder of images) into the item lists a bundle's dataset takes."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.errors import DataError

__all__ = ["load_datalist", "load_inputs", "list_images", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".dcm", ".dicom", ".jpg", ".jpeg")


def load_datalist(
    datalist: str | os.PathLike,
    key: str,
    base_dir: str | os.PathLike | None = None,
    num_classes: int | None = None,
    check_images: bool = True,
    path_keys: Sequence[str] = ("image",),
) -> list[dict[str, Any]]:
    """Load split ``key`` of a datalist JSON with image paths made absolute against ``base_dir``.

    Args:
        datalist: JSON file ``{"training": [...], "validation": [...], "test": [...]}``.
        key: the split to return.
        base_dir: folder the relative image paths start from (the bundle's ``dataset_dir``);
            defaults to the datalist's folder.
        num_classes: when given, every item's ``label`` must have this many values.
        check_images: verify that every file named under ``path_keys`` exists before training starts.
        path_keys: item keys holding file paths relative to ``base_dir`` (``["image", "label"]`` for
            segmentation, whose labels are mask files).

    Raises:
        DataError: missing or unreadable file, missing or empty split, bad label length, missing images.

    Example:
        >>> load_datalist("data/datalist.json", "training", "data", num_classes=14)  # doctest: +SKIP
    """
    file = Path(datalist)
    if not file.is_file():
        raise DataError(
            f"datalist not found: {file}; create it with `python -m common prepare-data DATASET --dataset-dir DIR "
            f"--output {file}` (DATASET: chestxray14, chestmnist, cbis-ddsm, inbreast or bcss)"
        )
    try:
        content = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{file}: not valid JSON ({err})") from err
    if not isinstance(content, dict) or key not in content:
        found = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise DataError(f"{file}: split {key!r} missing; found {found}")
    items = content[key]
    if not isinstance(items, list) or not items:
        raise DataError(f"{file}: split {key!r} is empty; expected a non-empty list of items")
    base = Path(base_dir) if base_dir is not None else file.parent
    out = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or "image" not in item:
            raise DataError(f"{file}: {key}[{index}] has no 'image' entry: {item!r}")
        if num_classes is not None and "label" in item and len(item["label"]) != num_classes:
            found = len(item["label"])
            raise DataError(f"{file}: {key}[{index}] ({item['image']}) has {found} label values, want {num_classes}")
        out.append({**item, **{k: str(base / item[k]) for k in path_keys if isinstance(item.get(k), str)}})
    if check_images:
        missing = [it[k] for it in out for k in path_keys if isinstance(it.get(k), str) and not os.path.isfile(it[k])]
        if missing:
            raise DataError(f"{file}: {len(missing)} image(s) of split {key!r} not found, e.g. {missing[:3]}")
    return out


def list_images(input_dir: str | os.PathLike) -> list[dict[str, str]]:
    """Return ``[{"image": path}, ...]`` for every PNG/DICOM/JPEG file under ``input_dir`` (sorted).

    Raises:
        DataError: the folder is missing or holds no image.
    """
    folder = Path(input_dir)
    if not folder.is_dir():
        raise DataError(f"input folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return [{"image": str(p)} for p in files]


def load_inputs(input_dir: str | os.PathLike, datalist: str | os.PathLike = "", key: str = "test") -> list[dict]:
    """Inference inputs: split ``key`` of ``datalist`` when one is given, else every image in ``input_dir``.

    Datalist image paths are taken relative to ``input_dir`` (the dataset folder) and need no labels; only
    each item's ``image`` is returned (labels, possibly unknown, are not inference inputs and would not batch).
    """
    if datalist:
        return [{"image": item["image"]} for item in load_datalist(datalist, key, base_dir=input_dir)]
    return list_images(input_dir)
