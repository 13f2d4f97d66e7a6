"""NIH ChestX-ray14 adapter: both CSV variants, image layouts, official lists and every reported error."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.data.chestxray14 import (
    CHESTXRAY14_FINDINGS,
    find_images,
    load_chestxray14_datalist,
    read_data_entry,
    summarise_datalist,
)
from common.data.splits import check_patient_disjoint
from common.errors import ConfigError, DataError

HEADER_2017 = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)
HEADER_2020 = HEADER_2017.rstrip(",")
CSV_FILE = {"2017": "Data_Entry_2017.csv", "2020": "Data_Entry_2017_v2020.csv"}

# (image, findings, patient id, view)
ROWS = [
    ("00000001_000.png", "Cardiomegaly", 1, "PA"),
    ("00000001_001.png", "Cardiomegaly|Emphysema", 1, "PA"),
    ("00000002_000.png", "No Finding", 2, "AP"),
    ("00000003_000.png", "Hernia|Atelectasis|Pleural_Thickening", 3, "PA"),
    ("00000004_000.png", "Effusion", 4, "PA"),
    ("00000005_000.png", "No Finding", 5, "PA"),
    ("00000005_001.png", "Mass|Nodule", 5, "AP"),
    ("00000006_000.png", "Pneumothorax", 6, "PA"),
]


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png_bytes()  # a complete 8x8 grey PNG: check_images reads each file's head and tail


def labels_of(text: str) -> list[float]:
    names = set() if text == "No Finding" else set(text.split("|"))
    return [float(name in names) for name in CHESTXRAY14_FINDINGS]


def write_csv(root: Path, rows: list[tuple[str, str, int, str]], variant: str = "2017") -> Path:
    trailing = "," if variant == "2017" else ""
    header = HEADER_2017 if variant == "2017" else HEADER_2020
    lines = [header] + [f"{img},{lab},{img[9:12].lstrip('0') or 0},{pid},45,F,{view},2500,2048,0.168,0.168{trailing}"
                        for img, lab, pid, view in rows]  # fmt: skip
    path = root / CSV_FILE[variant]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_dataset(
    root: Path,
    rows: list[tuple[str, str, int, str]] = ROWS,
    test_images: list[str] | None = None,
    folder: str = "images",
    variant: str = "2017",
) -> Path:
    """Write a tiny native dataset; ``test_images`` writes the official lists (everything else is train_val)."""
    write_csv(root, rows, variant)
    (root / folder).mkdir(parents=True, exist_ok=True)
    for image, *_ in rows:
        (root / folder / image).write_bytes(PNG)
    if test_images is not None:
        (root / "test_list.txt").write_text("".join(f"{name}\n" for name in test_images))
        train_val = [row[0] for row in rows if row[0] not in test_images]
        (root / "train_val_list.txt").write_text("".join(f"{name}\n" for name in train_val))
    return root


@pytest.mark.parametrize("variant", ["2017", "2020"], ids=["2017-trailing-comma", "v2020-no-trailing-comma"])
def test_read_data_entry_parses_both_variants(tmp_path: Path, variant: str) -> None:
    records = read_data_entry(write_csv(tmp_path, ROWS, variant))
    assert [r.image for r in records] == [row[0] for row in ROWS]
    assert [list(r.labels) for r in records] == [labels_of(row[1]) for row in ROWS]
    assert [r.patient_id for r in records] == [str(row[2]) for row in ROWS]
    assert [r.view for r in records] == [row[3] for row in ROWS]
    assert records[1].follow_up == "1" and records[0].age == "45" and records[0].gender == "F"


def test_read_data_entry_multi_label_and_no_finding(tmp_path: Path) -> None:
    records = {r.image: r for r in read_data_entry(write_csv(tmp_path, ROWS))}
    assert records["00000002_000.png"].labels == (0.0,) * 14
    hernia = records["00000003_000.png"].labels
    expected = {"Hernia", "Atelectasis", "Pleural_Thickening"}
    assert [name for name, value in zip(CHESTXRAY14_FINDINGS, hernia, strict=True) if value] == [
        name for name in CHESTXRAY14_FINDINGS if name in expected
    ]


def test_read_data_entry_finds_columns_by_name(tmp_path: Path) -> None:
    path = tmp_path / "Data_Entry_2017.csv"
    path.write_text("Patient ID,View Position,Finding Labels,Image Index\n7,PA,Mass,00000007_000.png\n")
    (record,) = read_data_entry(path)
    assert (record.image, record.patient_id, record.view, record.follow_up) == ("00000007_000.png", "7", "PA", "")
    assert record.labels[CHESTXRAY14_FINDINGS.index("Mass")] == 1.0


@pytest.mark.parametrize(
    "rows_text, match",
    [
        ("00000001_000.png,Cardiomegaly|Pneumonitis,0,1,58,M,PA,1,1,0.1,0.1,",
         r"Data_Entry_2017\.csv, line 2: unknown finding 'Pneumonitis'.*valid names: Atelectasis, Cardiomegaly"),
        ("00000001_000.png,Mass,0,1", r"Data_Entry_2017\.csv, line 2: 4 fields, expected 11"),
        ("00000001_000.png,Mass,0,1,58,M,PA,1,1,0.1,0.1,\n00000001_000.png,Mass,0,1,58,M,PA,1,1,0.1,0.1,",
         r"line 3: duplicate image '00000001_000\.png' \(first on line 2\)"),
    ],
    ids=["unknown-finding", "short-row", "duplicate-image"],
)  # fmt: skip
def test_read_data_entry_bad_rows(tmp_path: Path, rows_text: str, match: str) -> None:
    path = tmp_path / "Data_Entry_2017.csv"
    path.write_text(f"{HEADER_2017}\n{rows_text}\n")
    with pytest.raises(DataError, match=match):
        read_data_entry(path)


def test_read_data_entry_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "Data_Entry_2017.csv"
    path.write_text("Image Index,Finding Labels,View Position\n00000001_000.png,Mass,PA\n")
    with pytest.raises(DataError, match=r"line 1: missing column\(s\) \['Patient ID'\]"):
        read_data_entry(path)


def test_missing_csv(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no ChestX-ray14 label file .*Data_Entry_2017\.csv"):
        load_chestxray14_datalist(tmp_path)


@pytest.mark.parametrize("folder", ["images", "images_001/images", "images_001"], ids=["flat", "nested", "numbered"])
def test_find_images_layouts(tmp_path: Path, folder: str) -> None:
    write_dataset(tmp_path, folder=folder)
    (tmp_path / folder / "notes.txt").write_text("not an image")
    assert find_images(tmp_path) == {row[0]: f"{folder}/{row[0]}" for row in ROWS}
    datalist = load_chestxray14_datalist(tmp_path, val_fraction=0.25, test_fraction=0.25)
    assert {item["image"] for items in datalist.values() for item in items} == {f"{folder}/{r[0]}" for r in ROWS}


def test_find_images_spread_over_archives(tmp_path: Path) -> None:
    for index, (image, *_) in enumerate(ROWS):
        folder = tmp_path / f"images_{index % 3 + 1:03d}" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / image).write_bytes(b"")
    found = find_images(tmp_path)
    assert found["00000001_001.png"] == "images_002/images/00000001_001.png" and len(found) == len(ROWS)


@pytest.mark.parametrize("variant", ["2017", "2020"], ids=["2017", "v2020"])
def test_official_lists_are_honoured(tmp_path: Path, variant: str) -> None:
    test_images = ["00000004_000.png", "00000006_000.png"]
    datalist = load_chestxray14_datalist(write_dataset(tmp_path, test_images=test_images, variant=variant), 0.25)
    assert [item["image"] for item in datalist["test"]] == [f"images/{name}" for name in test_images]
    assert datalist["test"][0] == {
        "image": "images/00000004_000.png",
        "label": labels_of("Effusion"),
        "patient_id": "4",
    }
    train_val = {item["image"] for split in ("training", "validation") for item in datalist[split]}
    assert train_val == {f"images/{row[0]}" for row in ROWS if row[0] not in test_images}
    assert datalist["training"] and datalist["validation"]
    check_patient_disjoint(datalist)


def test_list_image_absent_from_csv(tmp_path: Path) -> None:
    write_dataset(tmp_path, test_images=["00000004_000.png", "00000099_000.png"])
    with pytest.raises(DataError, match=r"test_list\.txt, line 2: image '00000099_000\.png' is not in the label CSV"):
        load_chestxray14_datalist(tmp_path)


def test_image_in_both_lists(tmp_path: Path) -> None:
    write_dataset(tmp_path, test_images=["00000004_000.png"])
    with (tmp_path / "test_list.txt").open("a") as handle:
        handle.write("00000002_000.png\n")
    with pytest.raises(DataError, match=r"'00000002_000\.png' is listed in both train_val_list\.txt and test_list"):
        load_chestxray14_datalist(tmp_path)


def test_only_one_list(tmp_path: Path) -> None:
    write_dataset(tmp_path, test_images=["00000004_000.png"])
    (tmp_path / "train_val_list.txt").unlink()
    with pytest.raises(DataError, match=r"found test_list\.txt but not the other"):
        load_chestxray14_datalist(tmp_path)


def test_patient_in_two_splits_is_reported(tmp_path: Path) -> None:
    # Patient 5 has one image in each official list: a leak the adapter must report, not repair.
    write_dataset(tmp_path, test_images=["00000005_001.png", "00000006_000.png"])
    with pytest.raises(
        DataError, match=r"patient '5' has images in both split '(training|validation)' and split 'test'"
    ):
        load_chestxray14_datalist(tmp_path, val_fraction=0.25)


def test_missing_image(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    (tmp_path / "images" / "00000003_000.png").unlink()
    with pytest.raises(DataError, match=r"1 of 8 images are missing .*'00000003_000\.png'"):
        load_chestxray14_datalist(tmp_path, val_fraction=0.25)
    datalist = load_chestxray14_datalist(tmp_path, val_fraction=0.25, check_images=False)
    assert "images/00000003_000.png" in {item["image"] for items in datalist.values() for item in items}


def test_empty_split_is_reported(tmp_path: Path) -> None:
    write_dataset(tmp_path, test_images=["00000006_000.png"])
    with pytest.raises(DataError, match=r"split 'validation' is empty.*raise val_fraction \(now 0\.01\)"):
        load_chestxray14_datalist(tmp_path, val_fraction=0.01)


def many_patient_rows(n_patients: int) -> list[tuple[str, str, int, str]]:
    return [
        (f"{p:08d}_{f:03d}.png", "No Finding" if p % 2 else "Mass", p, "PA")
        for p in range(1, n_patients + 1)
        for f in range(2)
    ]


def test_seeded_split_is_deterministic_and_patient_wise(tmp_path: Path) -> None:
    write_dataset(tmp_path, rows=many_patient_rows(40))
    first = load_chestxray14_datalist(tmp_path, val_fraction=0.1, seed=7)
    assert load_chestxray14_datalist(tmp_path, val_fraction=0.1, seed=7) == first
    assert load_chestxray14_datalist(tmp_path, val_fraction=0.1, seed=8) != first
    patients = {split: len({item["patient_id"] for item in items}) for split, items in first.items()}
    assert patients == {"training": 29, "validation": 3, "test": 8}  # 0.2 of 40 for test, 0.1 of 32 for validation
    check_patient_disjoint(first)


def test_summarise_datalist_on_adapter_output(tmp_path: Path) -> None:
    write_dataset(tmp_path, rows=many_patient_rows(10))
    text = summarise_datalist(load_chestxray14_datalist(tmp_path, val_fraction=0.2), CHESTXRAY14_FINDINGS)
    assert text.splitlines()[0].split() == ["training", "validation", "test"]
    assert "Mass" in text and "Hernia" in text and "%" in text


# --- encodings, blank and zero-padded patient IDs, empty and truncated images -----------------------------------


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"], ids=["utf-8", "utf-8-bom"])
def test_utf8_with_or_without_bom_is_read(tmp_path: Path, bom: bytes) -> None:
    path = write_csv(tmp_path, ROWS)
    path.write_bytes(bom + path.read_bytes())
    assert [r.image for r in read_data_entry(path)] == [row[0] for row in ROWS]


@pytest.mark.parametrize("target", ["csv", "split-list"])
def test_bytes_that_are_not_utf8_name_the_file_and_line(tmp_path: Path, target: str) -> None:
    """The NIH files are ASCII: a Latin-1 byte (here 0xe9, "é") means a damaged or re-encoded file."""
    write_dataset(tmp_path, test_images=["00000006_000.png"])
    path, line = (tmp_path / "Data_Entry_2017.csv", 3) if target == "csv" else (tmp_path / "test_list.txt", 1)
    lines = path.read_bytes().split(b"\n")
    lines[line - 1] = lines[line - 1].replace(b".png", b"\xe9.png", 1)
    path.write_bytes(b"\n".join(lines))
    message = rf"{path.name}, line {line}: not valid UTF-8 \(line {line}, byte 0xe9 at offset \d+\)"
    with pytest.raises(DataError, match=message):
        load_chestxray14_datalist(tmp_path, val_fraction=0.25)


def test_blank_patient_id_names_file_and_line(tmp_path: Path) -> None:
    rows = [*ROWS[:3], ("00000009_000.png", "Mass", " ", "PA"), *ROWS[3:]]
    write_dataset(tmp_path, rows=rows)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"Data_Entry_2017\.csv, line 5: blank 'Patient ID' for image '00000009_000"):
        load_chestxray14_datalist(tmp_path)


def test_zero_padded_patient_ids_are_one_patient(tmp_path: Path) -> None:
    """Patient 12 written as 12, 00012 and 012: one patient, one split, one ID in the datalist."""
    rows = many_patient_rows(20) + [(f"00000012_{f:03d}.png", "Mass", pid, "PA") for f, pid in  # type: ignore[misc]
                                    ((5, "00012"), (6, "012"), (7, " 12"))]
    write_dataset(tmp_path, rows=rows)  # type: ignore[arg-type]
    for seed in range(6):
        datalist = load_chestxray14_datalist(tmp_path, val_fraction=0.3, test_fraction=0.3, seed=seed)
        twelve = [(split, item) for split, items in datalist.items() for item in items if "/00000012_" in item["image"]]
        splits, ids = {split for split, _ in twelve}, {item["patient_id"] for _, item in twelve}
        assert len(splits) == 1 and ids == {"12"}, (seed, splits, ids)
        assert sum(len(items) for items in datalist.values()) == len(rows)


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_empty_or_truncated_images_are_named(tmp_path: Path, damage: str) -> None:
    write_dataset(tmp_path)
    image = tmp_path / "images" / "00000004_000.png"
    image.write_bytes(b"" if damage == "empty" else PNG[: len(PNG) - 20])
    message = rf"1 image file\(s\) are empty, truncated.*: {image} is (empty|a truncated PNG)"
    with pytest.raises(DataError, match=message):
        load_chestxray14_datalist(tmp_path, val_fraction=0.25)
    assert load_chestxray14_datalist(tmp_path, val_fraction=0.25, check_images=False)


def task_rows(n_patients: int) -> list[tuple[str, str, int, str]]:
    """Patients cycling through: No Finding, Effusion alone, Effusion|Mass, Mass alone."""
    labels = ["No Finding", "Effusion", "Effusion|Mass", "Mass"]
    return [(f"{p:08d}_000.png", labels[p % 4], p, "PA") for p in range(1, n_patients + 1)]


@pytest.mark.parametrize(
    "task, alone, kept, classes",
    [("Effusion", False, {"No Finding": 0, "Effusion": 1, "Effusion|Mass": 1}, ["No Finding", "Effusion"]),
     ("effusion", True, {"No Finding": 0, "Effusion": 1}, ["No Finding", "Effusion"]),
     ("any", False, {"No Finding": 0, "Effusion": 1, "Effusion|Mass": 1, "Mass": 1}, ["No Finding", "Any finding"])],
    ids=["finding-with-others", "finding-alone", "any"],
)  # fmt: skip
def test_binary_task(tmp_path: Path, task: str, alone: bool, kept: dict[str, int], classes: list[str]) -> None:
    rows = task_rows(160)
    write_dataset(tmp_path, rows=rows)
    full = load_chestxray14_datalist(tmp_path, seed=3)
    datalist = load_chestxray14_datalist(tmp_path, seed=3, task=task, task_alone=alone)
    assert datalist["classes"] == classes
    finding_of = {image: text for image, text, *_ in rows}
    for split in ("training", "validation", "test"):
        items = datalist[split]
        assert {finding_of[item["image"].split("/")[-1]] for item in items} <= set(kept)
        assert all(item["label"] == kept[finding_of[item["image"].split("/")[-1]]] for item in items)
        # the same patients as the 14-label datalist: a binary task's split is a subset of it
        assert {item["image"] for item in items} <= {item["image"] for item in full[split]}
    assert {finding_of[item["image"].split("/")[-1]] for item in datalist["training"]} == set(kept)
    check_patient_disjoint({k: v for k, v in datalist.items() if k != "classes"})


def test_binary_task_keeps_the_official_test_list(tmp_path: Path) -> None:
    rows = task_rows(160)
    test_images = [row[0] for row in rows[:24]]
    write_dataset(tmp_path, rows=rows, test_images=test_images)
    datalist = load_chestxray14_datalist(tmp_path, task="Effusion")
    assert {item["image"].split("/")[-1] for item in datalist["test"]} == {
        image for image, text, *_ in rows[:24] if text != "Mass"}  # fmt: skip


def test_binary_task_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown ChestX-ray14 task 'Efusion'; did you mean 'Effusion'"):
        load_chestxray14_datalist(tmp_path, task="Efusion")
    write_dataset(tmp_path, rows=task_rows(40))
    with pytest.raises(DataError, match="binary task 'Hernia': split 'training' has no 'Hernia' image"):
        load_chestxray14_datalist(tmp_path, task="Hernia")


def test_binary_task_through_make_embedded_dataset(tmp_path: Path) -> None:
    from common.synthetic import make_embedded_dataset

    for task in ("Effusion", "any"):
        # prevalence 0.1 per finding: about 23% of the images are "No Finding" (0.9 ** 14)
        datalist = make_embedded_dataset("chestxray14", tmp_path / task,
                                         {"n_patients": 80, "image_size": 32, "prevalence": 0.1},
                                         {"task": task, "val_fraction": 0.25})  # fmt: skip
        assert datalist["classes"][0] == "No Finding" and {i["label"] for i in datalist["test"]} == {0, 1}
