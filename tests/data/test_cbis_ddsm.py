"""CBIS-DDSM adapter: CSV variants, image grouping and labels, DICOM resolution in the TCIA tree, every error."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from common.data.cbis_ddsm import find_full_mammogram, load_cbis_ddsm_datalist, read_case_description
from common.data.splits import check_patient_disjoint
from common.errors import DataError
from common.synthetic.mammo import CALC_CSV_HEADER, MASS_CSV_HEADER, write_mammogram_dicom

SPLIT_WORD = {"train": "Training", "test": "Test"}
# (csv kind, split, patient, side, view, pathology)
ROWS = [
    ("mass", "train", "P_00001", "LEFT", "CC", "MALIGNANT"),
    ("mass", "train", "P_00001", "LEFT", "CC", "BENIGN"),  # second abnormality on the same image
    ("mass", "train", "P_00001", "LEFT", "MLO", "BENIGN"),
    ("mass", "train", "P_00002", "RIGHT", "CC", "BENIGN_WITHOUT_CALLBACK"),
    ("calc", "train", "P_00002", "RIGHT", "CC", "MALIGNANT"),  # same image as the mass row above
    ("calc", "train", "P_00003", "RIGHT", "MLO", "BENIGN"),
    ("calc", "train", "P_00004", "LEFT", "CC", "BENIGN_WITHOUT_CALLBACK"),
    ("mass", "test", "P_00010", "RIGHT", "MLO", "MALIGNANT"),
    ("calc", "test", "P_00011", "LEFT", "CC", "BENIGN"),
]


def folder_of(kind: str, split: str, patient: str, side: str, view: str) -> str:
    return f"{kind.capitalize()}-{SPLIT_WORD[split]}_{patient}_{side}_{view}"


def csv_row(kind: str, split: str, patient: str, side: str, view: str, pathology: str, number: int = 1) -> list:
    folder = folder_of(kind, split, patient, side, view)
    full = f"{folder}/1.3.6.1.4.1.9590.100.1.2.1/1.3.6.1.4.1.9590.100.1.2.2/000000.dcm"
    roi = f"{folder}_{number}/1.3.6.1.4.1.9590.100.1.2.3/1.3.6.1.4.1.9590.100.1.2.4"
    descriptors = ["IRREGULAR", "SPICULATED"] if kind == "mass" else ["PLEOMORPHIC", "CLUSTERED"]
    abnormality = "mass" if kind == "mass" else "calcification"
    return [patient, 3, side, view, number, abnormality, *descriptors, 4, pathology, 3, full,
            f"{roi}/000000.dcm", f"{roi}/000001.dcm\n"]  # fmt: skip


def write_csvs(root: Path, rows: list[tuple] = ROWS) -> None:
    for kind in ("mass", "calc"):
        for split in ("train", "test"):
            with (root / f"{kind}_case_description_{split}_set.csv").open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(MASS_CSV_HEADER if kind == "mass" else CALC_CSV_HEADER)
                writer.writerows(csv_row(*row) for row in rows if row[:2] == (kind, split))


def write_dicom(path: Path, description: str = "full mammogram images") -> Path:
    pixels = np.full((16, 12), 1000, np.uint16)
    return write_mammogram_dicom(path, pixels, path.parts[-4], "L", "CC", description, ("1.2.3", "1.2.3.4", "1.2.3.5"))


def write_tree(root: Path, rows: list[tuple] = ROWS, tree: str = "CBIS-DDSM") -> dict[tuple[str, str, str], str]:
    """Full-mammogram DICOMs in TCIA-style UID folders; returns (patient, side, view) -> relative path."""
    paths = {}
    for row in rows:
        folder = folder_of(*row[:5])
        path = root / tree / folder / "1.3.6.1.4.1.9590.100.1.2.7" / "1.3.6.1.4.1.9590.100.1.2.8" / "1-1.dcm"
        if not path.exists():
            write_dicom(path)
        paths.setdefault((row[2], row[3][0], row[4]), path.relative_to(root).as_posix())
    return paths


def all_items(datalist: dict) -> dict[tuple[str, str, str], dict]:
    return {(it["patient_id"], it["laterality"], it["view"]): it for items in datalist.values() for it in items}


def test_images_group_rows_and_take_the_worst_pathology(tmp_path: Path) -> None:
    write_csvs(tmp_path)
    paths = write_tree(tmp_path)
    datalist = load_cbis_ddsm_datalist(tmp_path, val_fraction=0.25, seed=0)
    items = all_items(datalist)
    assert len(items) == 7 and sum(len(split) for split in datalist.values()) == 7  # 9 rows, 7 images
    assert {key: it["label"] for key, it in items.items()} == {
        ("P_00001", "L", "CC"): [1.0],
        ("P_00001", "L", "MLO"): [0.0],
        ("P_00002", "R", "CC"): [1.0],
        ("P_00003", "R", "MLO"): [0.0],
        ("P_00004", "L", "CC"): [0.0],
        ("P_00010", "R", "MLO"): [1.0],
        ("P_00011", "L", "CC"): [0.0],
    }
    assert items["P_00002", "R", "CC"]["abnormality_types"] == ["calcification", "mass"]
    assert items["P_00002", "R", "CC"]["image"] == paths["P_00002", "R", "CC"]  # first CSV's folder (mass)
    assert items["P_00010", "R", "MLO"] == {
        "image": paths["P_00010", "R", "MLO"],
        "label": [1.0],
        "patient_id": "P_00010",
        "laterality": "R",
        "view": "MLO",
        "abnormality_types": ["mass"],
    }
    assert {it["patient_id"] for it in datalist["test"]} == {"P_00010", "P_00011"}
    assert datalist["training"] and datalist["validation"]
    check_patient_disjoint(datalist)


def test_read_case_description_both_headers(tmp_path: Path) -> None:
    write_csvs(tmp_path)
    mass = read_case_description(tmp_path / "mass_case_description_train_set.csv")
    calc = read_case_description(tmp_path / "calc_case_description_train_set.csv")
    assert [r.pathology for r in mass] == ["MALIGNANT", "BENIGN", "BENIGN", "BENIGN_WITHOUT_CALLBACK"]
    assert calc[0].folder == "Calc-Training_P_00002_RIGHT_CC" and calc[0].abnormality_type == "calcification"
    assert mass[0].source.endswith("mass_case_description_train_set.csv, row 1 (line 3)")  # ROI paths span lines


HEADER = ",".join(MASS_CSV_HEADER)
GOOD = "P_00001,3,LEFT,CC,1,mass,OVAL,CIRCUMSCRIBED,3,{pathology},3,{path},a_1/x.dcm,a_1/y.dcm"
FULL = "Mass-Training_P_00001_LEFT_CC/1.2/1.3/000000.dcm"


@pytest.mark.parametrize(
    "text, match",
    [
        (HEADER.replace(",pathology", ",diagnosis") + "\n",
         r"mass_case_description_train_set\.csv, line 1: missing column\(s\) \['pathology'\]"),
        (HEADER + "\n" + GOOD.format(pathology="BENIGN", path=FULL) + "\nP_00002,3,LEFT,CC,1,mass\n",
         r"train_set\.csv, row 2 \(line 3\): 6 fields, expected 14"),
        (HEADER + "\n" + GOOD.format(pathology="BENIGN", path=" "),
         r"row 1 \(line 2\): found an empty 'image file path'"),
        (HEADER + "\n" + GOOD.format(pathology="MALIGN", path=FULL),
         r"row 1 \(line 2\): found pathology 'MALIGN'; expected one of \['MALIGNANT', 'BENIGN', "
         r"'BENIGN_WITHOUT_CALLBACK'\]"),
        (HEADER + "\n" + GOOD.format(pathology="BENIGN", path=FULL).replace(",CC,", ",ML,"),
         r"row 1 \(line 2\): found image view 'ML'; expected one of \['CC', 'MLO'\]"),
        (HEADER + "\n" + GOOD.format(pathology="BENIGN", path="Mass-Training_P_00001_LEFT_CC_1/1.2/1.3/000000.dcm"),
         r"row 1 \(line 2\): .*'Mass-Training_P_00001_LEFT_CC_1', a cropped-image / ROI-mask folder"),
    ],
    ids=["missing-column", "short-row", "empty-image-path", "unknown-pathology", "unknown-view", "roi-as-image"],
)  # fmt: skip
def test_malformed_csv(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "mass_case_description_train_set.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=match):
        read_case_description(path)
    with pytest.raises(DataError, match=match):
        load_cbis_ddsm_datalist(tmp_path)


def test_patient_in_train_and_test_csvs(tmp_path: Path) -> None:
    rows = [*ROWS, ("calc", "test", "P_00003", "LEFT", "CC", "BENIGN")]
    write_csvs(tmp_path, rows)
    write_tree(tmp_path, rows)
    with pytest.raises(DataError, match=r"patient P_00003 is in both a training CSV \(.*calc_case_description_train"
                       r"_set\.csv, row 2 .*\) and a test CSV \(.*calc_case_description_test_set\.csv"):  # fmt: skip
        load_cbis_ddsm_datalist(tmp_path, val_fraction=0.25)


def test_missing_dicom_names_the_folder(tmp_path: Path) -> None:
    write_csvs(tmp_path)
    write_tree(tmp_path, [row for row in ROWS if row[2] != "P_00004"])
    with pytest.raises(DataError, match=r"patient P_00004 L CC .*folder 'Calc-Training_P_00004_LEFT_CC' \(not found\)"):
        load_cbis_ddsm_datalist(tmp_path, val_fraction=0.25)
    datalist = load_cbis_ddsm_datalist(tmp_path, val_fraction=0.25, check_images=False)
    path = all_items(datalist)["P_00004", "L", "CC"]["image"]
    assert (
        path
        == "CBIS-DDSM/Calc-Training_P_00004_LEFT_CC/1.3.6.1.4.1.9590.100.1.2.1/1.3.6.1.4.1.9590.100.1.2.2/000000.dcm"
    )


def test_folder_without_dicom(tmp_path: Path) -> None:
    write_csvs(tmp_path)
    write_tree(tmp_path, [row for row in ROWS if row[2] != "P_00004"])
    (tmp_path / "CBIS-DDSM" / "Calc-Training_P_00004_LEFT_CC" / "1.2" / "1.3").mkdir(parents=True)
    with pytest.raises(DataError, match=r"'Calc-Training_P_00004_LEFT_CC' \(holds no \.dcm file\)"):
        load_cbis_ddsm_datalist(tmp_path, val_fraction=0.25)


def test_decoy_roi_folder_is_never_taken(tmp_path: Path) -> None:
    write_csvs(tmp_path)
    write_tree(tmp_path, [row for row in ROWS if row[2] != "P_00004"])
    decoy = tmp_path / "CBIS-DDSM" / "Calc-Training_P_00004_LEFT_CC_1" / "1.2" / "1.3" / "1-1.dcm"
    write_dicom(decoy, "ROI mask images")
    with pytest.raises(DataError, match=r"'Calc-Training_P_00004_LEFT_CC' \(not found\)"):
        load_cbis_ddsm_datalist(tmp_path, val_fraction=0.25)
    paths = write_tree(tmp_path)
    items = all_items(load_cbis_ddsm_datalist(tmp_path, val_fraction=0.25))
    assert items["P_00004", "L", "CC"]["image"] == paths["P_00004", "L", "CC"]


def test_several_dicoms_pick_the_full_mammogram(tmp_path: Path) -> None:
    case = tmp_path / "Mass-Training_P_00001_LEFT_CC"
    roi = write_dicom(case / "07-21-2016-DDSM-1" / "1.000000-ROI mask images-1" / "1-1.dcm", "ROI mask images")
    full = write_dicom(case / "07-20-2016-DDSM-2" / "1.000000-other-2" / "1-1.dcm")
    assert find_full_mammogram(case) == full
    full.unlink()
    no_tag = write_dicom(case / "07-20-2016-DDSM-2" / "1.000000-full mammogram images-2" / "1-1.dcm", "")
    assert find_full_mammogram(case) == no_tag  # series folder name when the tag is absent
    write_dicom(roi.with_name("1-2.dcm"), "")
    no_tag.unlink()
    with pytest.raises(DataError, match=r"2 DICOM files and 0 described as 'full mammogram images'.*1-1\.dcm"):
        find_full_mammogram(case)
    assert find_full_mammogram(tmp_path / "empty") is None


def test_layout_variants(tmp_path: Path) -> None:
    """CSVs in csv/ and the case folders directly in the dataset folder (no CBIS-DDSM/ wrapper)."""
    (tmp_path / "csv").mkdir()
    write_csvs(tmp_path / "csv")
    paths = write_tree(tmp_path, tree=".")
    items = all_items(load_cbis_ddsm_datalist(tmp_path, val_fraction=0.25))
    assert {key: item["image"] for key, item in items.items()} == {
        key: p.removeprefix("./") for key, p in paths.items()
    }


def test_no_csv(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no CBIS-DDSM case-description CSV .*mass_case_description_train_set\.csv"):
        load_cbis_ddsm_datalist(tmp_path)


def test_seeded_validation_split(tmp_path: Path) -> None:
    rows = [("mass", "train", f"P_{n:05d}", "LEFT", "CC", "BENIGN") for n in range(101, 141)] + ROWS[-2:]
    write_csvs(tmp_path, rows)
    write_tree(tmp_path, rows)
    first = load_cbis_ddsm_datalist(tmp_path, val_fraction=0.1, seed=3)
    assert load_cbis_ddsm_datalist(tmp_path, val_fraction=0.1, seed=3) == first
    assert load_cbis_ddsm_datalist(tmp_path, val_fraction=0.1, seed=4) != first
    assert {split: len(items) for split, items in first.items()} == {"training": 36, "validation": 4, "test": 2}


# --- encodings, blank and zero-padded patient IDs, empty and truncated DICOMs ----------------------------------


@pytest.mark.parametrize(
    ("raw", "match"),
    [((HEADER + "\n" + GOOD.format(pathology="BENIGN", path=FULL) + "\n").encode("utf-8-sig"), None),
     ((HEADER + "\n" + GOOD.format(pathology="BENIGN", path=FULL).replace("OVAL", "OVAL\xe9")).encode("cp1252"),
      r"mass_case_description_train_set\.csv, line 2: not valid UTF-8 \(line 2, byte 0xe9 at offset \d+\)"),
     ((HEADER + "\n" + GOOD.format(pathology="BENIGN", path=FULL).replace("P_00001", "")).encode(),
      r"train_set\.csv, row 1 \(line 2\): found an empty patient_id; expected a patient id such as P_00001")],
    ids=["utf-8-bom", "not-utf-8", "blank-patient-id"],
)
def test_csv_bytes_and_blank_patient_ids(tmp_path: Path, raw: bytes, match: str | None) -> None:
    path = tmp_path / "mass_case_description_train_set.csv"
    path.write_bytes(raw)
    if match is None:
        assert [row.patient_id for row in read_case_description(path)] == ["P_00001"]
        return
    with pytest.raises(DataError, match=match):
        read_case_description(path)


def test_zero_padded_numeric_patient_ids_are_one_patient(tmp_path: Path) -> None:
    """A re-exported CSV writing patient 12 as "00012" in one file and "12" in another must not hide the leak."""
    rows = [*ROWS, ("mass", "train", "00012", "LEFT", "CC", "BENIGN"), ("calc", "test", "12", "LEFT", "MLO", "BENIGN")]
    write_csvs(tmp_path, rows)
    write_tree(tmp_path, rows)
    with pytest.raises(DataError, match=r"patient 12 is in both a training CSV .* and a test CSV"):
        load_cbis_ddsm_datalist(tmp_path, val_fraction=0.25)


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_empty_or_truncated_dicoms_are_named(tmp_path: Path, damage: str) -> None:
    write_csvs(tmp_path)
    paths = write_tree(tmp_path)
    dicom = tmp_path / paths[("P_00003", "R", "MLO")]
    data = dicom.read_bytes()
    dicom.write_bytes(b"" if damage == "empty" else data[:-40])
    why = "is empty" if damage == "empty" else r"is truncated: Pixel Data declares 384 bytes from offset \d+ but"
    with pytest.raises(DataError, match=rf"CBIS-DDSM .*: 1 image file\(s\) are .*: {dicom} {why}"):
        load_cbis_ddsm_datalist(tmp_path, val_fraction=0.25)
    assert load_cbis_ddsm_datalist(tmp_path, val_fraction=0.25, check_images=False)
