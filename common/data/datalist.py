"""Read a MONAI datalist JSON (or a folder of images) into the item lists a bundle's dataset takes.

Everything a datalist says is checked before training starts, with errors naming the datalist, the split, the
item's index, the key, the value found and what was expected:

* the file is a JSON object whose split is a non-empty list of objects;
* every path key (``image``; ``label`` too for segmentation, whose labels are mask files) holds a non-empty
  string, and the file it names stays inside the dataset folder once resolved (``../``, absolute paths and
  symlinks included; see :mod:`common.data.containment`) unless ``allow_outside_dataset_dir`` is set;
* with ``num_classes`` (classification), a present ``label`` is a list of exactly ``num_classes`` values, each
  0, 1, ``true`` / ``false``, or ``null`` / ``NaN`` for an unknown finding (``MaskedBCEWithLogitsLoss`` skips
  it); single-label binary tasks (mammography) use one value, ``[1.0]``, not a bare ``1``;
* with ``check_images``, every file exists and is neither empty nor truncated (:mod:`common.data.image_files`).

A bundle's configs read with ``defer_missing=True``: a datalist (or input folder) that does not exist yet becomes
a :class:`MissingInputs` placeholder, so the workflow parses and initialises with no data at all, as MONAI's
model-zoo checks do (``create_workflow`` + ``check_properties`` with the default config); the bundle's ``run`` starts
with :func:`require_inputs`, which raises the same "not found" error before any handler starts. Anything else wrong
with a datalist that exists is still refused when it is read.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from common.data.containment import DatasetDirGuard
from common.data.image_files import check_image_files
from common.errors import DataError

__all__ = ["load_datalist", "load_inputs", "list_images", "MissingInputs", "require_inputs", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".dcm", ".dicom", ".jpg", ".jpeg")
_ITEM_EXAMPLE = '{"image": "images/00000001_000.png", "label": [0, 1, ...]}'
# Evaluation-only annotations (a variable number per image, which would not batch): read by common.explain, not here.
_NOT_BATCHED = ("boxes",)


class MissingInputs(Sequence):
    """Stands for a split whose datalist or input folder does not exist; every use raises the "not found" error.

    It lets a bundle's workflow be parsed, initialised and have its properties checked without data (MONAI's
    model-zoo checks run ``create_workflow`` + ``check_properties`` on a bundle's default config, whose
    ``dataset_dir`` is a placeholder path). It has length 1, not 0, because samplers and engines take the length
    when they are built: ``RandomSampler`` refuses 0, and an evaluator with 0 iterations skips its run without a
    word. Reading an item raises :class:`~common.errors.DataError`; a bundle's ``run`` calls
    :func:`require_inputs` first, so the error comes before any handler has started.

    Example:
        >>> inputs = load_datalist("/absent/datalist.json", "training", defer_missing=True)
        >>> len(inputs), inputs.message.split(";")[0]
        (1, 'datalist not found: /absent/datalist.json')
    """

    def __init__(self, message: str) -> None:
        self.message = message

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: Any) -> Any:
        raise DataError(self.message)

    def __iter__(self) -> Iterator[Any]:
        raise DataError(self.message)

    def __repr__(self) -> str:
        return f"MissingInputs({self.message!r})"


def require_inputs(*splits: Any) -> None:
    """Raise the "not found" :class:`~common.errors.DataError` of the first split that is :class:`MissingInputs`.

    The first step of a bundle's ``run`` (``"$common.data.datalist.require_inputs(@train#dataset#data, ...)"``):
    parsing accepts absent data, running does not.
    """
    for split in splits:
        if isinstance(split, MissingInputs):
            raise DataError(split.message)


def _kind(value: Any) -> str:
    return "NaN" if isinstance(value, float) and math.isnan(value) else type(value).__name__


def _read_split(file: Path, key: str) -> list[Any]:
    try:
        content = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{file}: not valid JSON ({err})") from err
    if not isinstance(content, dict):
        raise DataError(f"{file}: top level is a {_kind(content)}; expected an object of splits "
                        '{"training": [...], "validation": [...], "test": [...]}')  # fmt: skip
    if key not in content:
        raise DataError(f"{file}: split {key!r} missing; found {sorted(content)}")
    items = content[key]
    if not isinstance(items, list):
        raise DataError(f"{file}: split {key!r} is a {_kind(items)} ({str(items)[:80]!r}); expected a non-empty "
                        f"list of items like {_ITEM_EXAMPLE}")  # fmt: skip
    if not items:
        raise DataError(f"{file}: split {key!r} is empty; expected a non-empty list of items")
    return items


def _check_path_value(where: str, name: str, item: dict[str, Any]) -> str:
    if name not in item:
        raise DataError(f"{where} has no {name!r} entry; expected a file path relative to the dataset folder; "
                        f"found keys {sorted(item)}")  # fmt: skip
    value = item[name]
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where} {name!r} is {value!r} ({_kind(value)}); expected a non-empty file path (string) "
                        "relative to the dataset folder")  # fmt: skip
    return value


_BINARY = frozenset((0, 1))  # 0.0, 1.0, False and True compare (and hash) equal to these


def _check_label(where: str, label: Any, num_classes: int) -> None:
    try:
        if isinstance(label, list) and len(label) == num_classes and set(label) <= _BINARY:
            return  # the common case, without a Python-level loop over the values
    except TypeError:  # an unhashable value: reported below
        pass
    example = "[1.0]" if num_classes == 1 else "[1.0, 0.0, null, ...]"
    expected = f"a list of {num_classes} value(s), each 0, 1 or null (unknown), e.g. {example}"
    if not isinstance(label, list):
        raise DataError(f"{where} 'label' is {label!r} ({_kind(label)}); expected {expected}")
    if len(label) != num_classes:
        raise DataError(f"{where} has {len(label)} label values, want {num_classes}: {label!r}; expected {expected}")
    for position, value in enumerate(label):
        unknown = value is None or (isinstance(value, float) and math.isnan(value))
        if not unknown and (not isinstance(value, int | float) or value not in (0, 1)):
            raise DataError(f"{where} 'label'[{position}] is {value!r} ({_kind(value)}); expected 0, 1 or null "
                            "(unknown) in every position")  # fmt: skip


def _outside_message(where: str, name: str, value: str, resolved: str, base: Path, root: str) -> str:
    shown = f"{base}" if os.path.realpath(base) == str(base) else f"{base} (= {root})"
    return (f"{where} {name!r} path {value!r} resolves to {resolved}, outside the dataset folder {shown}; move the "
            "file into it, or pass allow_outside_dataset_dir=True (bundle config: \"allow_outside_dataset_dir\": "
            "true) if the datalist is trusted")


def load_datalist(
    datalist: str | os.PathLike,
    key: str,
    base_dir: str | os.PathLike | None = None,
    num_classes: int | None = None,
    check_images: bool = True,
    path_keys: Sequence[str] = ("image",),
    *,
    allow_outside_dataset_dir: bool = False,
    defer_missing: bool = False,
) -> list[dict[str, Any]] | MissingInputs:
    """Load split ``key`` of a datalist JSON with image paths made absolute against ``base_dir``.

    Items keep their keys except ``boxes`` (localisation boxes, read by :mod:`common.explain`): a variable
    number per image would not batch in a DataLoader.

    Args:
        datalist: JSON file ``{"training": [...], "validation": [...], "test": [...]}``.
        key: the split to return.
        base_dir: folder the relative image paths start from (the bundle's ``dataset_dir``);
            defaults to the datalist's folder.
        num_classes: when given, every item's ``label`` (if present) must be a list of this many values,
            each 0, 1 or null/NaN (unknown).
        check_images: verify that every file named under ``path_keys`` exists and is neither empty nor
            truncated before training starts.
        path_keys: item keys holding file paths relative to ``base_dir`` (``["image", "label"]`` for
            segmentation, whose labels are mask files); each must be present in every item.
        allow_outside_dataset_dir: accept paths that resolve outside ``base_dir`` (``../``, absolute paths,
            symlinks leading out). Off by default: a datalist should not open files elsewhere on the machine.
        defer_missing: when the datalist file does not exist, return :class:`MissingInputs` (which raises the
            "not found" error when used) instead of raising now; bundle configs set it so that they parse without data.

    Raises:
        DataError: missing (without ``defer_missing``) or unreadable file, missing, empty or non-list split, an
            item that is not an object, a path key missing or not a string, a path outside ``base_dir``, a label of
            the wrong type, length or value, missing, empty or truncated images. Messages name the datalist, split,
            index and key.

    Example:
        >>> load_datalist("data/datalist.json", "training", "data", num_classes=14)  # doctest: +SKIP
    """
    file = Path(datalist)
    if not file.is_file():
        message = (f"datalist not found: {file}; create it with `python -m common prepare-data DATASET --dataset-dir "
                   f"DIR --output {file}` (DATASET: chestxray14, chestmnist, cbis-ddsm, inbreast, bcss, class-folders, "
                   f"label-csv or medmnist; see `python -m common prepare-data --help`; stage-2 "
                   f"data: `python -m common prepare-data general-medical --sources SOURCES --output DIR`)")
        if defer_missing:
            return MissingInputs(message)
        raise DataError(message)
    items = _read_split(file, key)
    base = Path(base_dir) if base_dir is not None else file.parent
    guard = None if allow_outside_dataset_dir else DatasetDirGuard(base)
    keys = list(dict.fromkeys(["image", *path_keys]))
    out = []
    for index, item in enumerate(items):
        where = f"{file}: {key}[{index}]"
        if not isinstance(item, dict):
            raise DataError(f"{where} is {item!r} ({_kind(item)}); expected an object like {_ITEM_EXAMPLE}")
        where = f"{where} ({_check_path_value(where, 'image', item)})"
        paths = {name: _check_path_value(where, name, item) for name in keys}
        if num_classes is not None and "label" in item and "label" not in paths:
            _check_label(where, item["label"], num_classes)
        absolute = {name: str(base / value) for name, value in paths.items()}
        for name, path in absolute.items():
            resolved = guard.outside(path) if guard is not None else None
            if resolved is not None:
                raise DataError(_outside_message(where, name, paths[name], resolved, base, guard.root))
        out.append({**{k: v for k, v in item.items() if k not in _NOT_BATCHED}, **absolute})
    if check_images:
        files = [it[name] for it in out for name in keys]
        missing = [path for path in files if not os.path.isfile(path)]
        if missing:
            raise DataError(f"{file}: {len(missing)} image(s) of split {key!r} not found, e.g. {missing[:3]}")
        check_image_files(files, f"{file}, split {key!r}")
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


def load_inputs(
    input_dir: str | os.PathLike,
    datalist: str | os.PathLike = "",
    key: str = "test",
    *,
    allow_outside_dataset_dir: bool = False,
    defer_missing: bool = False,
) -> list[dict] | MissingInputs:
    """Inference inputs: split ``key`` of ``datalist`` when one is given, else every image in ``input_dir``.

    Datalist image paths are taken relative to ``input_dir`` (the dataset folder), must stay inside it unless
    ``allow_outside_dataset_dir`` (see :func:`load_datalist`), and need no labels; only each item's ``image`` is
    returned (labels, possibly unknown, are not inference inputs and would not batch). With ``defer_missing``, a
    datalist or input folder that does not exist gives :class:`MissingInputs` instead of an error now.
    """
    if datalist:
        items = load_datalist(datalist, key, base_dir=input_dir, allow_outside_dataset_dir=allow_outside_dataset_dir,
                              defer_missing=defer_missing)
        return items if isinstance(items, MissingInputs) else [{"image": item["image"]} for item in items]
    if defer_missing and not Path(input_dir).is_dir():
        return MissingInputs(f"input folder not found: {input_dir}")
    return list_images(input_dir)
