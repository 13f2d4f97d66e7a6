"""Read one split of a single-label datalist for a bundle, refusing a datalist that disagrees with the bundle.

The datalist (written by the class-folder, CSV, MedMNIST and ChestX-ray14 binary adapters, see
:mod:`common.data.single_label`) names its classes; the bundle names its own (``class_names``, ``num_classes``).
Training a 7-class head on a 4-class datalist, or with the classes in another order, would run and silently
mean nothing, so before anything is built the split is checked:

* ``classes`` of the datalist equals ``class_names`` (same names, same order), and ``num_classes`` equals
  ``len(class_names)`` (a datalist without ``classes`` is accepted with a warning: only the label range is checked);
* every item's ``label`` is an ``int`` in ``[0, num_classes)`` (a bare int, not the multi-label list).

Everything else (paths inside the dataset folder, images present and not truncated, ``defer_missing``) is
:func:`common.data.datalist.load_datalist`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.data.datalist import MissingInputs, load_datalist
from common.errors import DataError

__all__ = ["check_class_names", "load_single_label_datalist"]

logger = logging.getLogger(__name__)


def check_class_names(datalist: str | os.PathLike, classes: Any, class_names: Sequence[str], num_classes: int) -> None:
    """Refuse a datalist whose ``classes`` differ from the bundle's ``class_names`` / ``num_classes``.

    Raises:
        DataError: naming the datalist, both lists and the override that fixes it.

    Example:
        >>> check_class_names("d.json", ["a", "b"], ["a", "b", "c"], 3)
        Traceback (most recent call last):
        ...
        common.errors.DataError: d.json: the datalist's classes ['a', 'b'] differ from the bundle's class_names ...
    """
    names = [str(c) for c in class_names]
    if int(num_classes) != len(names):
        raise DataError(f"{datalist}: num_classes={num_classes} but class_names has {len(names)} names {names}; "
                        "set class_names (num_classes follows it) to the datalist's 'classes'")
    if classes is None:
        logger.warning("%s has no 'classes' list: cannot check it against class_names %s", datalist, names)
        return
    if not isinstance(classes, list) or [str(c) for c in classes] != names:
        raise DataError(f"{datalist}: the datalist's classes {classes!r} differ from the bundle's class_names {names} "
                        f"(num_classes={num_classes}); pass --class_names \"{json.dumps(classes)}\" (same names, "
                        "same order: label i is classes[i])")


def _check_labels(file: Path, key: str, items: Sequence[dict[str, Any]], num_classes: int) -> None:
    for index, item in enumerate(items):
        if "label" not in item:
            continue
        label = item["label"]
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_classes:
            raise DataError(f"{file}: {key}[{index}] ({item.get('image')}): label {label!r} is not a class index; "
                            f"expected an int in [0, {num_classes - 1}] (single-label datalist: "
                            '{"image": ..., "label": 2})')


def load_single_label_datalist(
    datalist: str | os.PathLike,
    key: str,
    base_dir: str | os.PathLike,
    class_names: Sequence[str],
    num_classes: int,
    check_images: bool = True,
    *,
    allow_outside_dataset_dir: bool = False,
    defer_missing: bool = False,
) -> list[dict[str, Any]] | MissingInputs:
    """Split ``key`` of a single-label datalist, its image paths made absolute against ``base_dir``.

    Args:
        datalist: ``{"classes": [...], "training": [{"image", "label", "patient_id"?}, ...], ...}``.
        key: the split to return.
        base_dir: the bundle's ``dataset_dir``.
        class_names: the bundle's class names (label ``i`` is ``class_names[i]``).
        num_classes: the bundle's ``num_classes`` (must equal ``len(class_names)``).
        check_images: verify every image exists and is not truncated.
        allow_outside_dataset_dir: see :func:`common.data.datalist.load_datalist`.
        defer_missing: a missing datalist gives :class:`MissingInputs` (the bundle parses without data).

    Raises:
        DataError: the datalist's classes disagree with ``class_names`` / ``num_classes``, a label is not an int in
            range, or anything :func:`~common.data.datalist.load_datalist` refuses.

    Example:
        >>> items = load_single_label_datalist("data/datalist.json", "training", "data", ["nv", "mel"], 2)
        ...  # doctest: +SKIP
    """
    items = load_datalist(datalist, key, base_dir, None, check_images,
                          allow_outside_dataset_dir=allow_outside_dataset_dir, defer_missing=defer_missing)
    if isinstance(items, MissingInputs):
        return items
    file = Path(datalist)
    content = json.loads(file.read_text(encoding="utf-8"))  # load_datalist has parsed it already
    check_class_names(file, content.get("classes"), class_names, num_classes)
    _check_labels(file, key, items, int(num_classes))
    return items
