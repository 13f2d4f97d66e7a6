"""Class-folder adapter: flat and Training/Testing layouts, patients.csv, stratified patient-wise splits, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.data.class_folders import load_class_folders_datalist, read_patients_csv
from common.data.single_label import check_single_label_datalist, split_items, summarise_single_label
from common.errors import ConfigError, DataError


def write_image(path: Path, value: int = 100, rgb: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (8, 8, 3) if rgb else (8, 8)
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)


def flat_dataset(root: Path, per_class: int = 10, patients: bool = True) -> Path:
    rows = ["image,patient_id"]
    for cls in ("b_class", "a_class"):
        for index in range(per_class):
            write_image(root / cls / f"{cls}_{index}.png", rgb=True)
            rows.append(f"{cls}/{cls}_{index}.png,{cls}-P{index // 2}")  # two images per patient
    if patients:
        (root / "patients.csv").write_text("\n".join(rows) + "\n")
    return root


def test_flat_layout_with_patients(tmp_path: Path) -> None:
    datalist = load_class_folders_datalist(flat_dataset(tmp_path), val_fraction=0.2, test_fraction=0.2, seed=1)
    assert datalist["classes"] == ["a_class", "b_class"]
    items = [item for split in ("training", "validation", "test") for item in datalist[split]]
    assert len(items) == 20 and all(set(item) == {"image", "label", "patient_id"} for item in items)
    assert all(item["label"] == int(item["image"].startswith("b_class")) for item in items)
    for split in ("validation", "test"):  # stratified: both classes in every split
        assert {item["label"] for item in datalist[split]} == {0, 1}
    check_single_label_datalist(datalist, "test")
    assert datalist == load_class_folders_datalist(tmp_path, val_fraction=0.2, test_fraction=0.2, seed=1)
    assert datalist != load_class_folders_datalist(tmp_path, val_fraction=0.2, test_fraction=0.2, seed=2)
    assert "a_class" in summarise_single_label(datalist)


def test_flat_layout_without_patients_has_no_patient_id(tmp_path: Path) -> None:
    datalist = load_class_folders_datalist(flat_dataset(tmp_path, patients=False))
    assert all("patient_id" not in item for split in ("training", "test") for item in datalist[split])


def test_patients_csv_by_bare_file_name(tmp_path: Path) -> None:
    flat_dataset(tmp_path, patients=False)
    rows = [f"{path.name},X{i}" for i, path in enumerate(sorted(tmp_path.rglob("*.png")))]
    (tmp_path / "patients.csv").write_text("patient_id,image\n" + "\n".join(f"{r.split(',')[1]},{r.split(',')[0]}"
                                                                           for r in rows))  # fmt: skip
    datalist = load_class_folders_datalist(tmp_path)
    assert all(item["patient_id"].startswith("X") for item in datalist["training"])


def test_official_training_testing_folders(tmp_path: Path) -> None:
    for split, count in (("Training", 10), ("Testing", 3)):
        for cls in ("glioma", "notumor"):
            for index in range(count):
                write_image(tmp_path / split / cls / f"{split[:2]}-{cls[:2]}_{index:04d}.jpg".replace("jpg", "png"))
    datalist = load_class_folders_datalist(tmp_path, val_fraction=0.2)
    assert datalist["classes"] == ["glioma", "notumor"]
    assert all(item["image"].startswith("Testing/") for item in datalist["test"]) and len(datalist["test"]) == 6
    assert all(item["image"].startswith("Training/") for item in datalist["training"] + datalist["validation"])
    assert len(datalist["validation"]) == 4


def test_official_validation_folder_is_kept(tmp_path: Path) -> None:
    for split in ("train", "val", "test"):
        for cls in ("x", "y"):
            write_image(tmp_path / split / cls / "0.png")
            write_image(tmp_path / split / cls / "1.png")
    datalist = load_class_folders_datalist(tmp_path)
    assert all(item["image"].startswith("val/") for item in datalist["validation"]) and len(datalist["validation"]) == 4


def test_classes_fix_the_order(tmp_path: Path) -> None:
    datalist = load_class_folders_datalist(flat_dataset(tmp_path), classes=["b_class", "a_class"])
    assert all(item["label"] == int(item["image"].startswith("a_class")) for item in datalist["training"])
    with pytest.raises(DataError, match="do not match the class folders"):
        load_class_folders_datalist(tmp_path, classes=["a_class"])


def test_empty_class_folder_is_named(tmp_path: Path) -> None:
    flat_dataset(tmp_path)
    (tmp_path / "c_class").mkdir()
    (tmp_path / "c_class" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"class folder .*c_class holds no image"):
        load_class_folders_datalist(tmp_path)


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\nbroken", b"not an image at all"],
                         ids=["empty", "truncated", "garbage"])  # fmt: skip
def test_unreadable_image_is_named(tmp_path: Path, content: bytes) -> None:
    flat_dataset(tmp_path, patients=False)
    (tmp_path / "a_class" / "bad.bmp" if content == b"not an image at all" else tmp_path / "a_class" / "bad.png"
     ).write_bytes(content)  # fmt: skip
    with pytest.raises(DataError, match="bad"):
        load_class_folders_datalist(tmp_path)


def test_patient_in_two_splits_is_refused(tmp_path: Path) -> None:
    for split in ("Training", "Testing"):
        for cls in ("x", "y"):
            for index in range(3):
                write_image(tmp_path / split / cls / f"{index}.png")
    (tmp_path / "patients.csv").write_text("image,patient_id\n" + "".join(
        f"{s}/{c}/{i}.png,{'same' if i == 0 else s + c + str(i)}\n"
        for s in ("Training", "Testing") for c in ("x", "y") for i in range(3)))  # fmt: skip
    with pytest.raises(DataError, match="patient 'same' has images in both split"):
        load_class_folders_datalist(tmp_path)


def test_patients_csv_errors(tmp_path: Path) -> None:
    flat_dataset(tmp_path)
    (tmp_path / "patients.csv").write_text("file,patient\na,b\n")
    with pytest.raises(DataError, match=r"patients.csv, line 1: missing column\(s\) \['image', 'patient_id'\]"):
        load_class_folders_datalist(tmp_path)
    (tmp_path / "patients.csv").write_text("image,patient_id\na_class/a_class_0.png,P1\n")
    with pytest.raises(DataError, match="19 image.s. have no patient"):
        load_class_folders_datalist(tmp_path)
    (tmp_path / "patients.csv").write_text("image,patient_id\nx.png,P1\nx.png,P2\n")
    with pytest.raises(DataError, match="line 3: image 'x.png' is listed twice"):
        read_patients_csv(tmp_path / "patients.csv")


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_class_folders_datalist(tmp_path / "absent")
    with pytest.raises(DataError, match="no class folders"):
        load_class_folders_datalist(tmp_path)
    write_image(tmp_path / "Training" / "x" / "0.png")
    write_image(tmp_path / "other" / "0.png")
    with pytest.raises(DataError, match="split folders .* beside other folders"):
        load_class_folders_datalist(tmp_path)


def test_label_out_of_range_and_bad_fractions() -> None:
    datalist = {"classes": ["a"], "training": [{"image": "x.png", "label": 1}], "validation": [], "test": []}
    with pytest.raises(DataError, match=r"training\[0\] \(x.png\): label 1 is out of range"):
        check_single_label_datalist(datalist, "src")
    with pytest.raises(ConfigError, match="val_fraction must lie in"):
        split_items([{"image": "x", "label": 0}], 1.0, 0.1, seed=0)
