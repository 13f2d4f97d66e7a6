"""INbreast adapter: separator detection, file-name join, patients from the hash, BI-RADS labels, errors."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from common.data.inbreast import (
    BIRADS_VALUES,
    load_inbreast_datalist,
    parse_inbreast_file_name,
    read_inbreast_csv,
)
from common.data.splits import check_patient_disjoint
from common.errors import ConfigError, DataError
from common.synthetic.mammo import write_mammogram_dicom

HEADER = ["Patient ID", "Patient age", "Laterality", "View", "Acquisition date", "File Name", "ACR", "Bi-Rads"]
# (file number, patient hash, side, file view, CSV view, bi-rads): 8 patients, one BI-RADS value each
ROWS = [
    (20586908 + 10 * n + k, f"{n:04x}c613a14b80a85", side, file_view, csv_view, birads)
    for n, birads in enumerate(BIRADS_VALUES)
    for k, (side, file_view, csv_view) in enumerate([("R", "CC", "CC"), ("R", "ML", "MLO")])
]


def _dicom_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = write_mammogram_dicom(Path(folder) / "x.dcm", np.full((16, 12), 1000, np.uint16), "p", "R", "CC",
                                     "full mammogram images", ("1.2.3", "1.2.3.4", "1.2.3.5"))  # fmt: skip
        return path.read_bytes()


DICOM = _dicom_bytes()  # a complete 16x12 mammogram: check_images reads each file's header


def file_name(number: int, patient: str, side: str, view: str) -> str:
    return f"{number}_{patient}_MG_{side}_{view}_ANON.dcm"


def write_dataset(root: Path, rows: list[tuple] = ROWS, sep: str = ";", lines: list[str] | None = None) -> Path:
    (root / "AllDICOMs").mkdir(parents=True, exist_ok=True)
    for number, patient, side, view, *_ in rows:
        (root / "AllDICOMs" / file_name(number, patient, side, view)).write_bytes(DICOM)
    body = [sep.join(["removed", "", side, csv_view, "201001", str(number), "2", birads])
            for number, _, side, _, csv_view, birads in rows]  # fmt: skip
    (root / "INbreast.csv").write_text("\n".join([sep.join(HEADER), *body, *(lines or [])]) + "\n")
    return root


def items_by_number(datalist: dict) -> dict[int, dict]:
    return {int(Path(it["image"]).name.split("_")[0]): it for items in datalist.values() for it in items}


@pytest.mark.parametrize("sep", [";", ","], ids=["semicolon", "comma"])
def test_labels_patients_and_views(tmp_path: Path, sep: str) -> None:
    datalist = load_inbreast_datalist(write_dataset(tmp_path, sep=sep), val_fraction=0.25, test_fraction=0.25)
    items = items_by_number(datalist)
    assert len(items) == len(ROWS)
    for number, patient, side, view, _, birads in ROWS:
        assert items[number] == {
            "image": f"AllDICOMs/{file_name(number, patient, side, view)}",
            "label": [float(birads in {"4a", "4b", "4c", "5", "6"})],
            "patient_id": patient,
            "laterality": side,
            "view": "MLO" if view == "ML" else "CC",
            "birads": birads,
        }
    assert {split: len({it["patient_id"] for it in items}) for split, items in datalist.items()} == {
        "training": 4, "validation": 2, "test": 2,
    }  # fmt: skip
    check_patient_disjoint(datalist)


@pytest.mark.parametrize("malignant_from, first", [("4", "4a"), ("4c", "4c"), ("5", "5"), (" 4B ", "4b")],
                         ids=["4", "4c", "5", "spaced-upper"])  # fmt: skip
def test_malignant_from_threshold(tmp_path: Path, malignant_from: str, first: str) -> None:
    items = items_by_number(load_inbreast_datalist(write_dataset(tmp_path), 0.25, 0.25, malignant_from=malignant_from))
    malignant = {BIRADS_VALUES.index(r[5]) >= BIRADS_VALUES.index(first) for r in ROWS if items[r[0]]["label"] == [1.0]}
    assert malignant == {True}
    assert sum(item["label"][0] for item in items.values()) == 2 * (len(BIRADS_VALUES) - BIRADS_VALUES.index(first))


@pytest.mark.parametrize("value", ["4d", "0", "7", ""], ids=["4d", "0", "7", "blank"])
def test_unknown_birads(tmp_path: Path, value: str) -> None:
    rows = [*ROWS[:-1], (*ROWS[-1][:5], value)]
    with pytest.raises(DataError, match=rf"INbreast\.csv, row 16 \(line 17\): unknown Bi-Rads value '{value}'; "
                       r"expected one of 1, 2, 3, 4a, 4b, 4c, 5, 6"):  # fmt: skip
        load_inbreast_datalist(write_dataset(tmp_path, rows))


def test_bad_malignant_from_and_fractions(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    with pytest.raises(ConfigError, match=r"unknown malignant_from '7'; choose from: 4, 1, 2, 3, 4a"):
        load_inbreast_datalist(tmp_path, malignant_from="7")
    with pytest.raises(ConfigError, match=r"sum to less than 1; got val_fraction=0.5, test_fraction=0.5"):
        load_inbreast_datalist(tmp_path, val_fraction=0.5, test_fraction=0.5)


def test_row_without_dicom(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    (tmp_path / "AllDICOMs" / file_name(*ROWS[3][:4])).unlink()
    with pytest.raises(DataError, match=rf"row 4 \(line 5\): File Name {ROWS[3][0]} has no DICOM in .*AllDICOMs; "
                       rf"expected a file named {ROWS[3][0]}_<patient hash>_MG_"):  # fmt: skip
        load_inbreast_datalist(tmp_path)


def test_dicom_without_row_is_left_out(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    (tmp_path / "AllDICOMs" / "99999999_aaaa_MG_L_CC_ANON.dcm").write_bytes(b"")
    (tmp_path / "AllDICOMs" / "notes.dcm").write_bytes(b"")
    items = items_by_number(load_inbreast_datalist(tmp_path, 0.25, 0.25))
    assert 99999999 not in items and len(items) == len(ROWS)


@pytest.mark.parametrize(
    "line, match",
    [
        ("removed;;R;CC;201001", r"row 17 \(line 18\): 5 fields, expected at least 8"),
        ("removed;;R;CC;201001;abc;2;2", r"row 17 \(line 18\): 'File Name' is 'abc'"),
        (f"removed;;R;CC;201001;{ROWS[0][0]}.0;2;2", rf"row 17 \(line 18\): File Name {ROWS[0][0]} repeats \(.*row 1 "),
        ("removed;;X;CC;201001;123;2;2", r"row 17 \(line 18\): Laterality 'X' / View 'CC'; expected L or R"),
    ],
    ids=["short-row", "bad-file-name", "repeated-number-as-float", "bad-laterality"],
)  # fmt: skip
def test_malformed_rows(tmp_path: Path, line: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_inbreast_datalist(write_dataset(tmp_path, lines=[line]))


def test_csv_laterality_must_match_the_file_name(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    lines = (tmp_path / "INbreast.csv").read_text().splitlines()
    lines[1] = lines[1].replace(";R;CC;", ";L;CC;")
    (tmp_path / "INbreast.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"row 1 \(line 2\): Laterality 'L' but the DICOM {ROWS[0][0]}_\w+_MG_R_CC"):
        load_inbreast_datalist(tmp_path)


def test_missing_column_and_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"INbreast label file not found: .*INbreast\.csv"):
        load_inbreast_datalist(tmp_path)
    write_dataset(tmp_path)
    text = (tmp_path / "INbreast.csv").read_text().replace("Bi-Rads", "BIRADS")
    (tmp_path / "INbreast.csv").write_text(text)
    with pytest.raises(DataError, match=r"INbreast\.csv, line 1: missing column\(s\) \['bi-rads'\]"):
        read_inbreast_csv(tmp_path / "INbreast.csv")
    (tmp_path / "INbreast.csv").write_text("File Name Bi-Rads\n")
    with pytest.raises(DataError, match=r"line 1: expected a ';'- or ','-separated header"):
        read_inbreast_csv(tmp_path / "INbreast.csv")


def test_blank_lines_and_parse_file_name(tmp_path: Path) -> None:
    assert len(read_inbreast_csv(write_dataset(tmp_path, lines=[";;;;;;;", ""]) / "INbreast.csv")) == len(ROWS)
    image = parse_inbreast_file_name("20586908_6c613a14b80a8591_MG_R_CC_ANON.dcm")
    assert image is not None and (image.number, image.patient_id, image.laterality, image.view) == (
        "20586908", "6c613a14b80a8591", "R", "CC",
    )  # fmt: skip
    assert parse_inbreast_file_name("20586908_MG_R_CC_ANON.dcm") is None


def test_seeded_split_is_deterministic(tmp_path: Path) -> None:
    views = [("L", "CC"), ("L", "ML"), ("R", "CC"), ("R", "ML")]
    rows = [(30000000 + 4 * n + k, f"{n:016x}", side, view, view.replace("ML", "MLO"), "2")
            for n in range(40) for k, (side, view) in enumerate(views)]  # fmt: skip
    write_dataset(tmp_path, rows)
    first = load_inbreast_datalist(tmp_path, seed=5)
    assert load_inbreast_datalist(tmp_path, seed=5) == first
    assert load_inbreast_datalist(tmp_path, seed=6) != first
    patients = {split: len({item["patient_id"] for item in items}) for split, items in first.items()}
    assert patients == {"training": 26, "validation": 6, "test": 8}  # 0.65 / 0.15 / 0.2 of 40 patients
    check_patient_disjoint(first)


# --- encodings, empty and truncated DICOMs ----------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252"])
def test_spreadsheet_encodings_are_read(tmp_path: Path, encoding: str) -> None:
    """The release was exported from a spreadsheet: a Portuguese "Observações" column may be UTF-8 or cp1252."""
    write_dataset(tmp_path)
    lines = (tmp_path / "INbreast.csv").read_text().splitlines()
    lines = [lines[0] + ";Observações"] + [line + ";lesão" for line in lines[1:]]
    (tmp_path / "INbreast.csv").write_bytes(("\n".join(lines) + "\n").encode(encoding))
    assert len(read_inbreast_csv(tmp_path / "INbreast.csv")) == len(ROWS)


def test_bytes_neither_utf8_nor_cp1252_name_the_line(tmp_path: Path) -> None:
    """0x81 is undefined in cp1252 (Latin-1 would have taken it silently as a control character)."""
    write_dataset(tmp_path)
    raw = (tmp_path / "INbreast.csv").read_bytes().split(b"\n")
    raw[3] = raw[3].replace(b"removed", b"remo\x81ved")
    (tmp_path / "INbreast.csv").write_bytes(b"\n".join(raw))
    with pytest.raises(DataError, match=r"INbreast\.csv, line 4: not valid UTF-8 \(line 4, byte 0x81 at offset \d+\) "
                                        r"nor cp1252 \(Windows-1252\) \(line 4, byte 0x81"):
        load_inbreast_datalist(tmp_path)


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_empty_or_truncated_dicoms_are_named(tmp_path: Path, damage: str) -> None:
    write_dataset(tmp_path)
    dicom = tmp_path / "AllDICOMs" / file_name(*ROWS[5][:4])
    dicom.write_bytes(b"" if damage == "empty" else DICOM[:-10])
    why = "is empty" if damage == "empty" else "is truncated: Pixel Data declares 384 bytes"
    with pytest.raises(DataError, match=rf"INbreast .*: 1 image file\(s\) are .*: {dicom} {why}"):
        load_inbreast_datalist(tmp_path, 0.25, 0.25)
    assert load_inbreast_datalist(tmp_path, 0.25, 0.25, check_images=False)
