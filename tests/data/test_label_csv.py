"""Label-CSV adapter: image,label[,patient_id][,split], HAM10000-style column names, and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.data.label_csv import load_label_csv_datalist
from common.errors import DataError


def write_images(root: Path, names: list[str]) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(root / name)


def dataset(root: Path, n: int = 24, patients: bool = True, split: bool = False) -> Path:
    names = [f"img/{i:03d}.png" for i in range(n)]
    write_images(root, names)
    header = "image,label" + (",patient_id" if patients else "") + (",split" if split else "")
    rows = [f"{name},{'mel' if i % 3 == 0 else 'nv'}" + (f",P{i // 2}" if patients else "")
            + (f",{'test' if i < 6 else 'train'}" if split else "") for i, name in enumerate(names)]  # fmt: skip
    (root / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


def test_image_label_patient(tmp_path: Path) -> None:
    datalist = load_label_csv_datalist(dataset(tmp_path), seed=4)
    assert datalist["classes"] == ["mel", "nv"]
    items = datalist["training"] + datalist["validation"] + datalist["test"]
    assert len(items) == 24 and all(set(item) == {"image", "label", "patient_id"} for item in items)
    assert all(item["label"] == (0 if int(item["image"][4:7]) % 3 == 0 else 1) for item in items)
    assert datalist == load_label_csv_datalist(tmp_path, seed=4)


def test_without_patient_column(tmp_path: Path) -> None:
    datalist = load_label_csv_datalist(dataset(tmp_path, patients=False))
    assert all("patient_id" not in item for item in datalist["training"])


def test_split_column_is_kept(tmp_path: Path) -> None:
    datalist = load_label_csv_datalist(dataset(tmp_path, split=True), val_fraction=0.2)
    assert sorted(int(item["image"][4:7]) for item in datalist["test"]) == list(range(6))


def test_ham10000_metadata_columns(tmp_path: Path) -> None:
    write_images(tmp_path, [f"images/ISIC_{i:07d}.png" for i in range(36)])
    rows = [f"HAM_{i // 2:07d},ISIC_{i:07d},{['bkl', 'nv', 'mel'][i % 3]},histo,60.0,male,back"
            for i in range(36)]  # fmt: skip
    (tmp_path / "HAM10000_metadata.csv").write_text("lesion_id,image_id,dx,dx_type,age,sex,localization\n"
                                                    + "\n".join(rows) + "\n")  # fmt: skip
    datalist = load_label_csv_datalist(tmp_path, "HAM10000_metadata.csv", image_column="image_id", label_column="dx",
                                       patient_column="lesion_id", image_dir="images", image_suffix=".png",
                                       classes=["mel", "nv", "bkl"])  # fmt: skip
    assert datalist["classes"] == ["mel", "nv", "bkl"]
    item = datalist["training"][0]
    assert item["image"].startswith("images/ISIC_") and item["patient_id"].startswith("HAM_")


def test_numeric_labels_sort_numerically(tmp_path: Path) -> None:
    names = [f"{i}.png" for i in range(33)]
    write_images(tmp_path, names)
    (tmp_path / "labels.csv").write_text("image,label\n" + "".join(f"{n},{i % 11}\n" for i, n in enumerate(names)))
    assert load_label_csv_datalist(tmp_path, val_fraction=0.34, test_fraction=0.34)["classes"] == [
        str(i) for i in range(11)]  # fmt: skip


@pytest.mark.parametrize(
    "text, match",
    [("file,label\na.png,x\n", r"line 1: missing column\(s\) \['image'\]"),
     ("image,label\nimg/000.png,\n", r"line 2: blank \['label'\]"),
     ("image,label\nimg/000.png,x\nimg/000.png,y\n", r"line 3: image 'img/000.png' is listed twice"),
     ("image,label,split\nimg/000.png,x,holdout\n", r"line 2: split 'holdout'"),
     ("image,label\nimg/999.png,x\n", r"1 of 1 image\(s\) not found"),
     ("image,label\n", "no data rows")],
    ids=["missing-column", "blank", "duplicate", "bad-split", "missing-image", "empty"],
)  # fmt: skip
def test_csv_errors_name_file_and_line(tmp_path: Path, text: str, match: str) -> None:
    write_images(tmp_path, ["img/000.png"])
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(DataError, match=match):
        load_label_csv_datalist(tmp_path)


def test_unknown_label_and_missing_named_column(tmp_path: Path) -> None:
    dataset(tmp_path)
    with pytest.raises(DataError, match=r"line 2: label 'mel' is not one of the classes \['nv'\]"):
        load_label_csv_datalist(tmp_path, classes=["nv"])
    with pytest.raises(DataError, match="missing column 'lesion_id' .named for patient_id"):
        load_label_csv_datalist(tmp_path, patient_column="lesion_id")
    with pytest.raises(DataError, match="label CSV not found"):
        load_label_csv_datalist(tmp_path, "absent.csv")


def test_unreadable_image_and_patient_in_two_splits(tmp_path: Path) -> None:
    dataset(tmp_path, split=True)
    text = (tmp_path / "labels.csv").read_text().replace("img/006.png,mel,P3,train", "img/006.png,mel,P0,train")
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(DataError, match="patient 'P0' has images in both split"):
        load_label_csv_datalist(tmp_path)
    (tmp_path / "img" / "001.png").write_bytes(b"")
    with pytest.raises(DataError, match="001.png is empty"):
        load_label_csv_datalist(tmp_path)
