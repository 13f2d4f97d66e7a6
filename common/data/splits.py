"""Patient-wise dataset splits: seeded assignment of items to named splits, and leakage checks.

Images of one patient are strongly correlated, so every adapter splits by patient, never by image,
and verifies the result: a patient found in two splits is an error to report, not to fix silently.

Patient identifiers are compared through :func:`normalise_patient_id`: a purely numeric identifier loses its
leading zeros and surrounding spaces (``"00012"``, ``" 12"`` and ``12`` are one patient), as happens when one
file stores the number and another a zero-padded form (a spreadsheet export, an image name such as
``00000012_000.png``). Other identifiers (``P_00012``, TCGA barcodes, hashes) are only stripped of spaces.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from common.errors import ConfigError, DataError

__all__ = [
    "normalise_patient_id",
    "patient_split",
    "group_by_split",
    "check_patient_disjoint",
    "check_nonempty_splits",
    "summarise_datalist",
]


_NUMERIC = re.compile(r"[0-9]+")


def normalise_patient_id(patient_id: Any) -> str:
    """The form under which patient identifiers are compared: numeric ones without leading zeros.

    Example:
        >>> normalise_patient_id("00012"), normalise_patient_id(12), normalise_patient_id(" P_00012 ")
        ('12', '12', 'P_00012')
    """
    text = str(patient_id).strip()
    return text.lstrip("0") or "0" if _NUMERIC.fullmatch(text) else text


def _patient_counts(n_patients: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Number of patients per split by the largest-remainder method, so the counts sum to ``n_patients``."""
    exact = {name: frac * n_patients for name, frac in fractions.items()}
    counts = {name: math.floor(value) for name, value in exact.items()}
    leftover = n_patients - sum(counts.values())
    # Ties break by the order of ``fractions``, which keeps the result deterministic.
    by_remainder = sorted(exact, key=lambda name: exact[name] - counts[name], reverse=True)
    for name in by_remainder[:leftover]:
        counts[name] += 1
    return counts


def patient_split(patient_ids: Sequence[str], fractions: Mapping[str, float], seed: int = 0) -> list[str]:
    """Assign each item to a named split so that all items of one patient land in the same split.

    Unique patients are sorted, shuffled with ``numpy.random.default_rng(seed)`` and cut in the order of
    ``fractions``; the result depends only on the set of patients, the fractions and the seed. Identifiers are
    grouped by :func:`normalise_patient_id` (``"00012"`` and ``"12"`` are one patient); each patient is sorted
    under the smallest form it is written in, so a dataset without such duplicates splits as it always did.

    Args:
        patient_ids: one patient identifier per item (repeats are expected).
        fractions: split name -> fraction of patients, each in [0, 1], summing to 1.
        seed: seed of the shuffle.

    Returns:
        The split name of each item, aligned with ``patient_ids``.

    Raises:
        ConfigError: if ``fractions`` is empty, has a value outside [0, 1] or does not sum to 1.

    Example:
        >>> patient_split(["a", "a", "b", "c"], {"training": 2 / 3, "test": 1 / 3}, seed=0)  # doctest: +SKIP
        ['training', 'training', 'test', 'training']
    """
    if not fractions:
        raise ConfigError("patient_split needs at least one split fraction, got an empty mapping")
    bad = {name: frac for name, frac in fractions.items() if not 0.0 <= frac <= 1.0}
    if bad:
        raise ConfigError(f"split fractions must lie in [0, 1], got {bad}")
    total = sum(fractions.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ConfigError(f"split fractions must sum to 1, got {dict(fractions)} (sum {total:.6g})")
    keys = [normalise_patient_id(pid) for pid in patient_ids]
    written: dict[str, Any] = {}
    for pid, key in zip(patient_ids, keys, strict=True):
        if key not in written or str(pid) < str(written[key]):
            written[key] = pid
    patients = sorted(written.values())
    order = np.random.default_rng(seed).permutation(len(patients))
    counts = _patient_counts(len(patients), fractions)
    split_of: dict[str, str] = {}
    start = 0
    for name, count in counts.items():
        for index in order[start : start + count]:
            split_of[normalise_patient_id(patients[index])] = name
        start += count
    return [split_of[key] for key in keys]


def group_by_split(items: Sequence[Any], assignments: Sequence[str], names: Sequence[str]) -> dict[str, list[Any]]:
    """Group ``items`` by their split name, keeping the input order inside each split.

    Args:
        items: the items to group.
        assignments: split name of each item (e.g. from :func:`patient_split`).
        names: the split names to return, in order; each gets a list even if empty.

    Returns:
        Split name -> list of items.

    Raises:
        DataError: if ``items`` and ``assignments`` differ in length or a name is not in ``names``.
    """
    if len(items) != len(assignments):
        raise DataError(f"{len(items)} items but {len(assignments)} split assignments")
    groups: dict[str, list[Any]] = {name: [] for name in names}
    for item, name in zip(items, assignments, strict=True):
        if name not in groups:
            raise DataError(f"unknown split {name!r}; expected one of {list(names)}")
        groups[name].append(item)
    return groups


def check_patient_disjoint(datalist: Mapping[str, Sequence[Mapping[str, Any]]], key: str = "patient_id") -> None:
    """Raise if any patient has items in more than one split (identifiers compared by :func:`normalise_patient_id`).

    Args:
        datalist: split name -> list of item dicts, each holding ``key``.
        key: the item field holding the patient identifier.

    Raises:
        DataError: naming the first shared patient, its two splits and how many patients are shared.
    """
    first_seen: dict[str, tuple[str, str]] = {}
    shared: dict[str, tuple[str, str, str, str]] = {}
    for split, items in datalist.items():
        for index, item in enumerate(items):
            if key not in item:
                raise DataError(f"item {index} of split {split!r} has no {key!r} field: {dict(item)}")
            written = str(item[key])
            seen_split, seen_written = first_seen.setdefault(normalise_patient_id(written), (split, written))
            if seen_split != split:
                shared.setdefault(normalise_patient_id(written), (seen_split, seen_written, split, written))
    if shared:
        split_a, pid_a, split_b, pid_b = next(iter(shared.values()))
        same = f"patient {pid_a!r}" if pid_a == pid_b else f"patient {pid_a!r} (written {pid_b!r} in {split_b!r})"
        raise DataError(
            f"{same} has images in both split {split_a!r} and split {split_b!r} "
            f"({len(shared)} patient(s) shared between splits); splits must be patient-disjoint to avoid leakage"
        )


def check_nonempty_splits(datalist: Mapping[str, Sequence[Any]], hints: Mapping[str, str] | None = None) -> None:
    """Raise if a split holds no items.

    Args:
        datalist: split name -> list of items.
        hints: optional split name -> advice appended to the message (e.g. "raise val_fraction").

    Raises:
        DataError: naming the empty split, the sizes of all splits and the hint.
    """
    hints = hints or {}
    sizes = {split: len(items) for split, items in datalist.items()}
    for split, size in sizes.items():
        if size == 0:
            hint = hints.get(split, "use more data or change the split fractions")
            raise DataError(f"split {split!r} is empty (split sizes: {sizes}); {hint}")


def summarise_datalist(datalist: Mapping[str, Sequence[Mapping[str, Any]]], class_names: Sequence[str]) -> str:
    """Describe a multi-label datalist: per split the image / patient counts and each class's prevalence (%).

    Raises:
        DataError: if an item's label length differs from ``class_names``.

    Example:
        >>> print(summarise_datalist({"training": [{"label": [1.0, 0.0], "patient_id": "1"}]}, ["A", "B"]))
                    training
        images             1
        patients           1
        A             100.0%
        B               0.0%
    """
    splits = list(datalist)
    width = max([len(name) for name in class_names] + [8])
    lines = [f"{'':<{width}}" + "".join(f"{split:>12}" for split in splits)]
    counts = {split: len(items) for split, items in datalist.items()}
    patients = {
        split: len({normalise_patient_id(item.get("patient_id", f"item {i}")) for i, item in enumerate(items)})
        for split, items in datalist.items()
    }
    lines.append(f"{'images':<{width}}" + "".join(f"{counts[split]:>12d}" for split in splits))
    lines.append(f"{'patients':<{width}}" + "".join(f"{patients[split]:>12d}" for split in splits))
    prevalence: dict[str, np.ndarray] = {}
    for split, items in datalist.items():
        try:
            labels = np.asarray([item["label"] for item in items], dtype=np.float64).reshape(len(items), -1)
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"split {split!r}: every item needs a 'label' list of equal length ({err})") from err
        if items and labels.shape[1] != len(class_names):
            raise DataError(f"split {split!r}: labels have {labels.shape[1]} values but {len(class_names)} class names")
        prevalence[split] = np.nanmean(labels, axis=0) * 100 if items else np.full(len(class_names), np.nan)
    for index, name in enumerate(class_names):
        lines.append(f"{name:<{width}}" + "".join(f"{prevalence[split][index]:>11.1f}%" for split in splits))
    return "\n".join(lines)
