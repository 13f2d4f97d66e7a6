"""Synthetic ChestX-ray14 generator: rendering, per-finding signs, the written layout and the adapter round trip."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.data.chestxray14 import CHESTXRAY14_FINDINGS, load_chestxray14_datalist, read_data_entry
from common.errors import ConfigError, DataError
from common.synthetic.cxr import DATA_ENTRY_2017_HEADER, generate_chestxray14, render_chest, sample_cases
from common.synthetic.cxr_signs import FINDING_SIGNS

# Where each sign may appear, as (x0, y0, x1, y1) image fractions: lung zones, heart, below the heart.
EXPECTED_REGION = {
    "Atelectasis": (0.1, 0.35, 0.9, 0.7),  # mid / lower lung band
    "Cardiomegaly": (0.25, 0.4, 0.8, 0.8),  # central heart shadow
    "Effusion": (0.1, 0.4, 0.9, 0.85),  # lung bases
    "Infiltration": (0.1, 0.15, 0.9, 0.75),
    "Mass": (0.1, 0.15, 0.9, 0.7),
    "Nodule": (0.1, 0.15, 0.9, 0.75),
    "Pneumonia": (0.1, 0.3, 0.9, 0.8),  # lower zones
    "Pneumothorax": (0.1, 0.1, 0.9, 0.85),
    "Consolidation": (0.1, 0.1, 0.9, 0.55),  # upper lobes
    "Edema": (0.2, 0.2, 0.8, 0.7),  # perihilar
    "Emphysema": (0.05, 0.05, 0.95, 0.9),
    "Fibrosis": (0.1, 0.1, 0.9, 0.65),  # upper / mid zones
    "Pleural_Thickening": (0.1, 0.1, 0.9, 0.7),  # apical / lateral rim
    "Hernia": (0.35, 0.6, 0.7, 0.95),  # below the heart
}
NONE = [0.0] * len(CHESTXRAY14_FINDINGS)


def only(name: str) -> list[float]:
    return [float(finding == name) for finding in CHESTXRAY14_FINDINGS]


def test_every_finding_has_a_sign() -> None:
    assert set(FINDING_SIGNS) == set(CHESTXRAY14_FINDINGS) == set(EXPECTED_REGION)


def test_render_chest_is_seeded_grey_uint8() -> None:
    image = render_chest(NONE, np.random.default_rng(1), 96)
    assert image.shape == (96, 96) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, render_chest(NONE, np.random.default_rng(1), 96))
    assert not np.array_equal(image, render_chest(NONE, np.random.default_rng(2), 96))
    # Radiograph-like: dark corners (air), darker lung fields than the bright midline (mediastinum / spine).
    assert image[:8, :8].mean() < 40 and image[30:50, 20:30].mean() < image[30:50, 45:51].mean() - 40


def test_render_chest_needs_14_labels() -> None:
    with pytest.raises(DataError, match="needs 14 labels, got 3"):
        render_chest([0.0] * 3, np.random.default_rng(0))


@pytest.mark.parametrize("name", CHESTXRAY14_FINDINGS, ids=CHESTXRAY14_FINDINGS)
@pytest.mark.parametrize("seed", [0, 1, 2], ids=["seed0", "seed1", "seed2"])
def test_each_sign_changes_the_image_in_its_region(name: str, seed: int) -> None:
    size = 128
    normal = render_chest(NONE, np.random.default_rng(seed), size).astype(np.int16)
    sick = render_chest(only(name), np.random.default_rng(seed), size).astype(np.int16)
    changed = np.abs(sick - normal) > 20
    # Visible at 64 px: >= ~100 changed pixels at 128 px (a 5 x 5 patch at 64 px), contrast >= 0.2 of the range.
    assert changed.sum() >= 100 and np.abs(sick - normal).max() >= 0.2 * 255
    x0, y0, x1, y1 = (round(v * size) for v in EXPECTED_REGION[name])
    inside = changed[y0:y1, x0:x1].sum()
    assert inside >= 0.99 * changed.sum(), f"{name}: {changed.sum() - inside} changed pixels outside its region"


def test_sample_cases_prevalence_and_names() -> None:
    cases = sample_cases(400, images_per_patient=(1, 3), prevalence=0.25, seed=0)
    labels = np.array([case.labels for case in cases])
    assert np.all((labels.mean(axis=0) > 0.18) & (labels.mean(axis=0) < 0.32))
    assert {case.image for case in cases if case.patient_id == 7} == {
        f"00000007_{follow:03d}.png" for follow in range(sum(case.patient_id == 7 for case in cases))
    }
    healthy = next(case for case in cases if not any(case.labels))
    assert healthy.finding_labels == "No Finding"


@pytest.mark.parametrize(
    "kwargs", [{"n_patients": 0}, {"images_per_patient": (2, 1)}, {"prevalence": 1.5}], ids=["patients", "range", "p"]
)
def test_sample_cases_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        sample_cases(**{"n_patients": 5, **kwargs})


def test_generate_writes_the_2017_layout(tmp_path: Path) -> None:
    root = generate_chestxray14(tmp_path / "nih", n_patients=10, image_size=64, seed=3)
    lines = (root / "Data_Entry_2017.csv").read_text().splitlines()
    assert lines[0] == DATA_ENTRY_2017_HEADER and lines[0].endswith("],")
    rows = list(csv.reader(lines))
    assert {len(row) for row in rows} == {12} and all(row[-1] == "" for row in rows)
    first = rows[1][0]
    with Image.open(root / "images" / first) as image:
        assert image.mode == "L" and image.size == (64, 64)
    train_val = (root / "train_val_list.txt").read_text().split()
    test = (root / "test_list.txt").read_text().split()
    assert sorted(train_val + test) == sorted(row[0] for row in rows[1:])
    assert not {name[:8] for name in train_val} & {name[:8] for name in test}  # patient-disjoint
    assert 1 <= len({name[:8] for name in test}) <= 3  # ~20 % of 10 patients


def test_generator_round_trips_through_the_adapter(tmp_path: Path) -> None:
    root = generate_chestxray14(tmp_path, n_patients=20, images_per_patient=(1, 3), image_size=64, seed=5)
    expected = {case.image: list(case.labels) for case in sample_cases(20, (1, 3), seed=5)}
    datalist = load_chestxray14_datalist(root, val_fraction=0.2, seed=0)
    got = {Path(item["image"]).name: item["label"] for items in datalist.values() for item in items}
    assert got == expected
    assert {r.image: list(r.labels) for r in read_data_entry(root / "Data_Entry_2017.csv")} == expected
    assert [Path(item["image"]).name for item in datalist["test"]] == (root / "test_list.txt").read_text().split()


def test_generate_is_deterministic(tmp_path: Path) -> None:
    first = generate_chestxray14(tmp_path / "a", n_patients=6, image_size=32, seed=1)
    second = generate_chestxray14(tmp_path / "b", n_patients=6, image_size=32, seed=1)
    for name in ("Data_Entry_2017.csv", "train_val_list.txt", "test_list.txt", "images/00000001_000.png"):
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_generate_needs_patients_for_both_lists(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="leave a split list empty"):
        generate_chestxray14(tmp_path, n_patients=1, image_size=32)
