"""Single-label datalists: the shared shape, splitting and checks of the class-folder, CSV and MedMNIST adapters.

A single-label datalist is the MONAI datalist plus the class names, index = label value::

    {"classes": ["glioma", "meningioma", "notumor", "pituitary"],
     "training": [{"image": "Training/glioma/Tr-gl_0001.jpg", "label": 0, "patient_id": "P0001"}, ...],
     "validation": [...], "test": [...]}

``label`` is an ``int`` in ``[0, len(classes))``; ``patient_id`` is present on every item when the source names
patients and absent on every item otherwise (each image then counts as its own patient for the split).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from common.data.splits import (
    _patient_counts,
    check_nonempty_splits,
    check_patient_disjoint,
    group_by_split,
    patient_split,
)
from common.errors import ConfigError, DataError

__all__ = [
    "SPLIT_NAMES",
    "split_items",
    "check_single_label_datalist",
    "summarise_single_label",
]

logger = logging.getLogger(__name__)

SPLIT_NAMES: tuple[str, ...] = ("training", "validation", "test")


def _group_key(item: Mapping[str, Any]) -> str:
    """The patient an item is split with: its ``patient_id``, else its own image path."""
    return str(item["patient_id"]) if "patient_id" in item else f"image:{item['image']}"


def _at_least_one(n_patients: int, fractions: Mapping[str, float]) -> dict[str, float]:
    """Fractions giving every split with a fraction > 0 at least one of ``n_patients`` when there are enough.

    A small class would otherwise lose its validation patients to rounding (0.1 x 4 patients = 0).
    """
    if n_patients < len(fractions):
        return dict(fractions)  # too few to give every split one: leave it to patient_split
    counts = _patient_counts(n_patients, fractions)  # the counts patient_split would draw
    for name, frac in fractions.items():
        if frac > 0 and counts[name] == 0:
            largest = max(counts, key=lambda other: counts[other])
            counts[largest] -= 1
            counts[name] = 1
    return {name: count / n_patients for name, count in counts.items()}


def _stratified_split(items: Sequence[Mapping[str, Any]], keys: Sequence[str], fractions: Mapping[str, float],
                      seed: int) -> list[str]:  # fmt: skip
    """:func:`patient_split` within each class (a patient counts under the label of its first item)."""
    stratum_of: dict[str, Any] = {}
    for item, key in zip(items, keys, strict=True):
        stratum_of.setdefault(key, item["label"])
    assigned: dict[str, str] = {}
    for stratum in sorted(set(stratum_of.values()), key=str):
        members = [key for key, value in stratum_of.items() if value == stratum]
        assigned.update(zip(members, patient_split(members, _at_least_one(len(members), fractions), seed),
                            strict=True))  # fmt: skip
    return [assigned[key] for key in keys]


def split_items(
    items: Sequence[dict[str, Any]],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    official: Sequence[str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Split items patient-wise (seeded) and stratified by class into training / validation / test.

    Each class's patients are drawn separately (:func:`common.data.splits.patient_split` per class), so a small
    dataset still has every class in every split it can; a patient is drawn with the class of its first item.

    Args:
        items: datalist items, each with ``image`` and, when known, ``patient_id``.
        val_fraction: fraction of the train-val patients drawn for validation.
        test_fraction: fraction of all patients drawn for test; ignored when ``official`` is given.
        seed: seed of both draws (:func:`common.data.splits.patient_split`).
        official: per item ``"train_val"``, ``"validation"`` or ``"test"`` from the dataset's own split; official
            test (and validation) items stay where they are, validation is drawn from ``"train_val"`` only when the
            dataset has no official validation items.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``.

    Raises:
        ConfigError: a fraction outside [0, 1).

    Example:
        >>> items = [{"image": f"a/{i}.png", "label": i % 2} for i in range(10)]
        >>> sorted(len(v) for v in split_items(items, 0.2, 0.2, seed=0).values())
        [2, 2, 6]
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{name} must lie in [0, 1), got {value}")
    keys = [_group_key(item) for item in items]
    if official is None:
        first = _stratified_split(items, keys, {"train_val": 1 - test_fraction, "test": test_fraction}, seed)
    else:
        first = list(official)
    groups = group_by_split(list(zip(items, keys, strict=True)), first, ["train_val", "validation", "test"])
    train_val = groups["train_val"]
    if groups["validation"]:  # an official validation split is kept as it is
        return {"training": [i for i, _ in train_val], "validation": [i for i, _ in groups["validation"]],
                "test": [i for i, _ in groups["test"]]}  # fmt: skip
    second = _stratified_split([i for i, _ in train_val], [k for _, k in train_val],
                               {"training": 1 - val_fraction, "validation": val_fraction}, seed)
    splits = group_by_split([i for i, _ in train_val], second, ["training", "validation"])
    return splits | {"test": [i for i, _ in groups["test"]]}


def check_single_label_datalist(datalist: Mapping[str, Any], source: str) -> None:
    """Verify a single-label datalist: class names, label range, patient ids, disjoint and non-empty splits.

    Args:
        datalist: ``{"classes": [...], "training": [...], "validation": [...], "test": [...]}``.
        source: what the datalist was built from, to start every message (a folder, a file).

    Raises:
        DataError: duplicate or missing class names, a label that is not an int in range (naming split, index and
            image), ``patient_id`` on some items but not others, a patient in two splits, an empty split.

    Example:
        >>> check_single_label_datalist({"classes": ["a", "b"], "training": [{"image": "x.png", "label": 2}],
        ...                              "validation": [], "test": []}, "demo")  # doctest: +SKIP
        Traceback (most recent call last):
        DataError: demo: training[0] (x.png): label 2 is out of range; expected an int in [0, 2) for classes ['a', 'b']
    """
    classes = datalist.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
        raise DataError(f"{source}: 'classes' must be a non-empty list of class names, got {classes!r}")
    if len(set(classes)) != len(classes):
        raise DataError(f"{source}: duplicate class names in {classes}")
    splits = {name: datalist.get(name, []) for name in SPLIT_NAMES}
    with_pid = sum("patient_id" in item for items in splits.values() for item in items)
    total = sum(len(items) for items in splits.values())
    if with_pid not in (0, total):
        raise DataError(f"{source}: {with_pid} of {total} items have a patient_id; give one for every item or none")
    for split, items in splits.items():
        for index, item in enumerate(items):
            label = item.get("label")
            if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(classes):
                raise DataError(f"{source}: {split}[{index}] ({item.get('image')}): label {label!r} is out of range; "
                                f"expected an int in [0, {len(classes)}) for classes {classes}")  # fmt: skip
    if with_pid:
        check_patient_disjoint(splits)
    check_nonempty_splits(splits, {"validation": "raise val_fraction or add patients",
                                   "test": "raise test_fraction or add patients"})  # fmt: skip


def summarise_single_label(datalist: Mapping[str, Any]) -> str:
    """Describe a single-label datalist: per split the image and patient counts and the count of each class.

    Example:
        >>> print(summarise_single_label({"classes": ["a", "b"], "training": [{"image": "x", "label": 1}],
        ...                               "validation": [], "test": []}))
                training  validation        test
        images         1           0           0
        patients       1           0           0
        a              0           0           0
        b              1           0           0
    """
    classes = list(datalist["classes"])
    splits = [name for name in SPLIT_NAMES if name in datalist]
    width = max([len(name) for name in classes] + [8])
    lines = [f"{'':<{width}}" + "".join(f"{split:>12}" for split in splits)]
    rows: dict[str, list[int]] = {"images": [], "patients": []} | {name: [] for name in classes}
    for split in splits:
        items = datalist[split]
        rows["images"].append(len(items))
        rows["patients"].append(len({_group_key(item) for item in items}))
        for index, name in enumerate(classes):
            rows[name].append(sum(item["label"] == index for item in items))
    lines += [f"{name:<{width}}" + "".join(f"{value:>12d}" for value in values) for name, values in rows.items()]
    return "\n".join(lines)
