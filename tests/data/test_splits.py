"""Patient-wise split helpers: grouping, exact counts, determinism and leakage checks."""

from __future__ import annotations

import numpy as np
import pytest

from common.data.splits import (
    _patient_counts,
    check_nonempty_splits,
    check_patient_disjoint,
    group_by_split,
    normalise_patient_id,
    patient_split,
    summarise_datalist,
)
from common.errors import ConfigError, DataError

PATIENTS = [f"p{i}" for i in range(10) for _ in range(i % 3 + 1)]  # 10 patients, 1-3 items each
FRACTIONS = {"training": 0.7, "validation": 0.2, "test": 0.1}


def test_patient_split_keeps_each_patient_in_one_split() -> None:
    assignment = patient_split(PATIENTS, FRACTIONS, seed=0)
    split_of: dict[str, set[str]] = {}
    for pid, split in zip(PATIENTS, assignment, strict=True):
        split_of.setdefault(pid, set()).add(split)
    assert all(len(splits) == 1 for splits in split_of.values())
    counts = {name: sum(next(iter(s)) == name for s in split_of.values()) for name in FRACTIONS}
    assert counts == {"training": 7, "validation": 2, "test": 1}


def test_patient_split_is_seeded_and_order_independent() -> None:
    first = patient_split(PATIENTS, FRACTIONS, seed=3)
    assert patient_split(PATIENTS, FRACTIONS, seed=3) == first
    by_patient = dict(zip(PATIENTS, first, strict=True))
    reversed_ids = PATIENTS[::-1]
    assert patient_split(reversed_ids, FRACTIONS, seed=3) == [by_patient[pid] for pid in reversed_ids]
    assert any(patient_split(PATIENTS, FRACTIONS, seed=seed) != first for seed in range(4, 10))


def test_patient_split_counts_sum_to_patient_count() -> None:
    ids = [str(i) for i in range(7)]
    assignment = patient_split(ids, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, seed=0)
    assert sorted(assignment.count(name) for name in "abc") == [2, 2, 3]


@pytest.mark.parametrize(
    "fractions, match",
    [({}, "empty"), ({"a": 0.5, "b": 0.4}, "sum to 1"), ({"a": 1.5, "b": -0.5}, r"\[0, 1\]")],
    ids=["empty", "not-summing", "out-of-range"],
)
def test_patient_split_rejects_bad_fractions(fractions: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        patient_split(["1", "2"], fractions)


def test_group_by_split_keeps_order_and_empty_names() -> None:
    groups = group_by_split(["x", "y", "z"], ["b", "a", "b"], ["a", "b", "c"])
    assert groups == {"a": ["y"], "b": ["x", "z"], "c": []}
    with pytest.raises(DataError, match="unknown split 'd'"):
        group_by_split(["x"], ["d"], ["a"])


def test_check_patient_disjoint_names_patient_and_splits() -> None:
    datalist = {
        "training": [{"patient_id": "1"}, {"patient_id": "2"}],
        "test": [{"patient_id": "3"}, {"patient_id": "2"}],
    }
    with pytest.raises(DataError, match=r"patient '2' has images in both split 'training' and split 'test'"):
        check_patient_disjoint(datalist)
    datalist["test"].pop()
    check_patient_disjoint(datalist)


def test_check_patient_disjoint_requires_the_key() -> None:
    with pytest.raises(DataError, match="no 'patient_id' field"):
        check_patient_disjoint({"training": [{"image": "a.png"}]})


def test_check_nonempty_splits_names_split_and_hint() -> None:
    with pytest.raises(DataError, match=r"split 'validation' is empty.*raise val_fraction"):
        check_nonempty_splits({"training": [1], "validation": []}, {"validation": "raise val_fraction"})
    check_nonempty_splits({"training": [1]})


def test_summarise_datalist_reports_counts_and_prevalence() -> None:
    datalist = {
        "training": [{"label": [1.0, 0.0], "patient_id": "1"}, {"label": [1.0, 1.0], "patient_id": "1"}],
        "test": [{"label": [0.0, 0.0], "patient_id": "2"}],
    }
    lines = summarise_datalist(datalist, ["Mass", "Nodule"]).splitlines()
    assert lines[0].split() == ["training", "test"]
    assert lines[1].split() == ["images", "2", "1"]
    assert lines[2].split() == ["patients", "1", "1"]
    assert lines[3].split() == ["Mass", "100.0%", "0.0%"]
    assert lines[4].split() == ["Nodule", "50.0%", "0.0%"]
    with pytest.raises(DataError, match="2 values but 3 class names"):
        summarise_datalist(datalist, ["a", "b", "c"])


# --- patient IDs that differ only by leading zeros ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "normalised"),
    [("00012", "12"), ("12", "12"), (12, "12"), (" 0012 ", "12"), ("000", "0"), ("P_00012", "P_00012"),
     ("TCGA-A1-A0SK", "TCGA-A1-A0SK"), ("0a1b", "0a1b"), ("12.0", "12.0"), (" p1 ", "p1")],
    ids=["padded", "plain", "int", "spaces", "zero", "cbis-prefix", "tcga", "hash", "float-text", "text-spaces"],
)
def test_normalise_patient_id(written: object, normalised: str) -> None:
    assert normalise_patient_id(written) == normalised


@pytest.mark.parametrize("seed", range(5))
def test_zero_padded_ids_are_one_patient_in_patient_split(seed: int) -> None:
    ids = [f"p{i}" for i in range(8)] + ["00012", "12", "012", " 12"]
    assignment = patient_split(ids, {"training": 0.5, "test": 0.5}, seed)
    assert len(set(assignment[-4:])) == 1
    test_patients = {normalise_patient_id(pid) for pid, split in zip(ids, assignment, strict=True) if split == "test"}
    assert len(test_patients) == 4  # 9 patients (12 counted once): 5 training, 4 test


def _old_patient_split(ids: list[str], fractions: dict[str, float], seed: int) -> list[str]:
    """The split before identifiers were normalised: what datasets without padded duplicates must still get."""
    patients = sorted(set(ids))
    order = np.random.default_rng(seed).permutation(len(patients))
    split_of, start = {}, 0
    for name, count in _patient_counts(len(patients), fractions).items():
        split_of |= {patients[index]: name for index in order[start : start + count]}
        start += count
    return [split_of[pid] for pid in ids]


@pytest.mark.parametrize("ids", [[f"{i:05d}" for i in range(1, 40)], [str(i) for i in range(1, 40)], PATIENTS],
                         ids=["all-padded", "plain-numbers", "names"])  # fmt: skip
def test_splits_without_padded_duplicates_are_unchanged(ids: list[str]) -> None:
    for seed in range(3):
        assert patient_split(ids, FRACTIONS, seed) == _old_patient_split(ids, FRACTIONS, seed)


def test_check_patient_disjoint_sees_through_leading_zeros() -> None:
    datalist = {"training": [{"patient_id": "00012"}, {"patient_id": "3"}], "test": [{"patient_id": 12}]}
    with pytest.raises(DataError, match=r"patient '00012' \(written '12' in 'test'\) has images in both split "
                                        r"'training' and split 'test' \(1 patient\(s\) shared"):
        check_patient_disjoint(datalist)
    summary = summarise_datalist({"training": [{"label": [1.0], "patient_id": p} for p in ("007", "7", 7)]}, ["A"])
    assert summary.splitlines()[2].split() == ["patients", "1"]
