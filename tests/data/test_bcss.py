"""BCSS adapter: code table reading and checking, class-map grouping, file pairing, barcodes, sizes, splits."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.data.bcss import (
    BCSS_DEFAULT_CLASS_MAP,
    BCSS_GTRUTH_CODES,
    bcss_patient_id,
    build_code_lookup,
    compare_gtruth_codes,
    load_bcss_codes,
    load_bcss_datalist,
    read_gtruth_codes,
    summarise_bcss_datalist,
    validate_bcss_masks,
)
from common.data.splits import check_patient_disjoint
from common.errors import ConfigError, DataError

# meta/gtruth_codes.tsv of github.com/PathologyDataScience/BCSS, verbatim.
RELEASED_TSV = "label\tGT_code\n" + "".join(f"{label}\t{code}\n" for label, code in BCSS_GTRUTH_CODES.items())
PATIENTS = [f"TCGA-{site}-A0{n}K" for n, site in enumerate(["A1", "A2", "AR", "BH", "E2", "OL", "S3", "GM"])]
SIZE = (24, 16)  # width, height


def roi_name(patient: str, index: int) -> str:
    return f"{patient}-DX1_xmin{1000 + 37 * index}_ymin{2000 + 11 * index}_MPP-0.2500.png"


def write_pair(root: Path, name: str, codes: np.ndarray | None = None, image_size: tuple[int, int] = SIZE,
               folder: str = "rgbs_colorNormalized") -> None:  # fmt: skip
    (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", image_size, (220, 150, 190)).save(root / folder / name)
    mask = np.full(SIZE[::-1], 2, np.uint8) if codes is None else codes
    Image.fromarray(mask).save(root / "masks" / name)


def write_dataset(
    root: Path, tiles: int = 2, tsv: str | None = RELEASED_TSV, folder: str = "rgbs_colorNormalized"
) -> Path:
    for patient in PATIENTS:
        for index in range(tiles):
            write_pair(root, roi_name(patient, index), folder=folder)
    if tsv is not None:
        (root / "meta").mkdir(exist_ok=True)
        (root / "meta" / "gtruth_codes.tsv").write_text(tsv)
    return root


# --- code table -------------------------------------------------------------------------------------------


def test_released_file_matches_the_documented_codes(tmp_path: Path) -> None:
    (tmp_path / "codes.tsv").write_text(RELEASED_TSV)
    codes = read_gtruth_codes(tmp_path / "codes.tsv")
    assert codes == BCSS_GTRUTH_CODES and list(codes) == list(BCSS_GTRUTH_CODES)
    assert codes["outside_roi"] == 0 and codes["exclude"] == 7 and codes["other"] == 21
    assert compare_gtruth_codes(codes) == []


@pytest.mark.parametrize(
    "text",
    ["label\tGT_code\ntumor\t1\nstroma\t2\n", "GT_code,label\n1,tumor\n2,stroma\n", "tumor\t1\nstroma\t2\n",
     "\ufeffLabel ; Code\r\ntumor ; 1\r\n\r\nstroma ; 2\r\n", "# codes\nlabel GT_code\ntumor   1\nstroma  2\n",
     "label\tGT_code\ntumor\t1\t\nstroma\t2\t\n"],
    ids=["released", "swapped-comma", "no-header", "bom-crlf-semicolon", "comment-spaces", "trailing-tab"],
)  # fmt: skip
def test_header_variations(tmp_path: Path, text: str) -> None:
    (tmp_path / "codes.tsv").write_bytes(text.encode())
    assert read_gtruth_codes(tmp_path / "codes.tsv") == {"tumor": 1, "stroma": 2}


@pytest.mark.parametrize(
    "text, match",
    [("label\tGT_code\ntumor\tone\n", r"line 2: code 'one' for 'tumor'; expected an integer in 0\.\.255"),
     ("label\tGT_code\ntumor\t1\nstroma\t1\n", r"line 3: label 'stroma' or code 1 repeats"),
     ("label\tGT_code\ntumor\t1\t5\n", r"line 2: 3 field\(s\) \['tumor', '1', '5'\]; expected 2"),
     ("label\tGT_code\ntumor\t300\n", r"code '300'.*0\.\.255"),
     ("name\tcolour\tcode\n", r"line 1: header .*expected two columns"),
     ("\n# nothing\n", r"no rows")],
    ids=["not-int", "repeated-code", "three-fields", "over-255", "bad-header", "empty"],
)  # fmt: skip
def test_codes_file_errors(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "codes.tsv").write_text(text)
    with pytest.raises(DataError, match=match):
        read_gtruth_codes(tmp_path / "codes.tsv")


def test_differences_are_reported_and_the_file_wins(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    changed = RELEASED_TSV.replace("fat\t9", "adipose\t9").replace("dcis\t20", "dcis\t22")
    write_dataset(tmp_path, tiles=1, tsv=changed)
    with caplog.at_level(logging.WARNING, logger="common.data.bcss"):
        codes = load_bcss_codes(tmp_path)
    assert codes["adipose"] == 9 and codes["dcis"] == 22 and "fat" not in codes
    message = caplog.text
    assert "differs from the documented codes" in message
    for part in ["'fat' (documented code 9) is missing", "'adipose' = 9 is not a documented label",
                 "'dcis' has code 22, documented 20"]:  # fmt: skip
        assert part in message
    with pytest.raises(ConfigError, match=r"unknown label 'fat' in class_map group 'other'; choose from"):
        build_code_lookup(codes)  # the default map names 'fat': a renamed label must be mapped explicitly


def test_documented_table_without_codes_file(tmp_path: Path) -> None:
    assert load_bcss_codes(write_dataset(tmp_path, tiles=1, tsv=None)) == BCSS_GTRUTH_CODES


# --- class map --------------------------------------------------------------------------------------------


def test_default_grouping_is_exact() -> None:
    lut = build_code_lookup(BCSS_GTRUTH_CODES)
    assert lut.dtype == np.uint8 and lut.shape == (256,)
    assert lut[[0, 1, 2, 3, 10, 7, 9]].tolist() == [0, 1, 2, 3, 3, 0, 5]
    expected = {0: 0, 1: 1, 2: 2, 3: 3, 10: 3, 11: 3, 4: 4, 7: 0}
    assert {code: int(lut[code]) for code in range(22)} == {code: expected.get(code, 5) for code in range(22)}
    assert not lut[22:].any()
    assert list(BCSS_DEFAULT_CLASS_MAP) == ["tumor", "stroma", "inflammatory", "necrosis", "other"]


def test_custom_class_map() -> None:
    class_map = {
        "tumour_or_dcis": ["tumor", "dcis", "angioinvasion"],
        "immune": ["plasma_cells", "lymphocytic_infiltrate"],
        "ink": ["exclude"],
    }
    lut = build_code_lookup(BCSS_GTRUTH_CODES, class_map)
    assert lut[[0, 1, 20, 19, 10, 3, 7, 2, 11, 9]].tolist() == [0, 1, 1, 1, 2, 2, 3, 0, 0, 0]


@pytest.mark.parametrize(
    "class_map, match",
    [({"tumor": ["tumour"]}, r"unknown label 'tumour' in class_map group 'tumor'; did you mean 'tumor'\?"),
     ({"a": ["tumor"], "b": ["stroma", "tumor"]}, r"label 'tumor' of class_map group 'b' is already group 'a'"),
     ({"background": ["outside_roi"]}, r"'outside_roi'.*don't-care region \(code 0\)"),
     ({"tumor": "tumor"}, r"group 'tumor' must be a non-empty list of label names, got 'tumor'"),
     ({"tumor": []}, r"group 'tumor' must be a non-empty list"),
     ({}, r"class_map must map 1\.\.255 group names")],
    ids=["unknown-label", "two-groups", "outside-roi", "string", "empty-group", "empty-map"],
)  # fmt: skip
def test_bad_class_map(class_map: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_code_lookup(BCSS_GTRUTH_CODES, class_map)


@pytest.mark.parametrize("codes", [{"tumor": 1, "stroma": 1}, {"tumor": 256}, {"tumor": "1"}],
                         ids=["repeated", "over-255", "string"])  # fmt: skip
def test_bad_code_table(codes: dict) -> None:
    with pytest.raises(ConfigError, match="distinct integer in 0..255"):
        build_code_lookup(codes, {"tumor": ["tumor"]})


# --- layout, patients, splits -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, patient",
    [("TCGA-A1-A0SK-DX1_xmin45749_ymin25055_MPP-0.2500.png", "TCGA-A1-A0SK"),
     ("tcga-oL-a5rw-DX1_xmin1_ymin2_MPP-0.2500.png", "TCGA-OL-A5RW"), ("TCGA-E2-A14N.png", "TCGA-E2-A14N")],
    ids=["released", "lower-case", "barcode-only"],
)  # fmt: skip
def test_patient_from_barcode(name: str, patient: str) -> None:
    assert bcss_patient_id(name) == patient


@pytest.mark.parametrize("name", ["A1-A0SK-DX1.png", "TCGA-A1-A0SKX-DX1.png", "roi_TCGA-A1-A0SK.png"],
                         ids=["no-project", "long-participant", "not-at-start"])  # fmt: skip
def test_name_without_barcode(tmp_path: Path, name: str) -> None:
    write_dataset(tmp_path, tiles=1)
    write_pair(tmp_path, name)
    with pytest.raises(DataError, match=rf"{name}: no TCGA barcode at the start of the file name"):
        load_bcss_datalist(tmp_path)


@pytest.mark.parametrize("folder", ["rgbs_colorNormalized", "images"])
def test_datalist_items_and_patient_split(tmp_path: Path, folder: str) -> None:
    datalist = load_bcss_datalist(write_dataset(tmp_path, folder=folder), val_fraction=0.25, test_fraction=0.25)
    assert list(datalist) == ["training", "validation", "test"]
    items = [item for split in datalist.values() for item in split]
    assert len(items) == 2 * len(PATIENTS)
    for item in items:
        name = Path(item["image"]).name
        assert item == {"image": f"{folder}/{name}", "label": f"masks/{name}", "patient_id": name[:12]}
        assert (tmp_path / item["image"]).is_file() and (tmp_path / item["label"]).is_file()
    check_patient_disjoint(datalist)
    patients = {split: {item["patient_id"] for item in items} for split, items in datalist.items()}
    assert {split: len(ids) for split, ids in patients.items()} == {"training": 4, "validation": 2, "test": 2}
    assert {split: len(items) for split, items in datalist.items()} == {"training": 8, "validation": 4, "test": 4}


def test_split_is_seeded(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    runs = {seed: load_bcss_datalist(tmp_path, 0.25, 0.25, seed=seed) for seed in range(4)}
    assert load_bcss_datalist(tmp_path, 0.25, 0.25, seed=2) == runs[2]
    tests = {seed: frozenset(item["patient_id"] for item in run["test"]) for seed, run in runs.items()}
    assert len(set(tests.values())) > 1


def test_missing_masks_and_images_are_listed(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    (tmp_path / "masks" / roi_name(PATIENTS[0], 0)).unlink()
    (tmp_path / "masks" / roi_name(PATIENTS[1], 1)).unlink()
    Image.new("L", SIZE).save(tmp_path / "masks" / "TCGA-ZZ-ZZZZ-DX1_xmin1_ymin1_MPP-0.2500.png")
    with pytest.raises(DataError, match=r"2 image\(s\) in .*rgbs_colorNormalized without a mask in .*masks, e\.g\. "
                       rf"\['{roi_name(PATIENTS[0], 0)}', '{roi_name(PATIENTS[1], 1)}'\]; 1 mask\(s\) in .*masks "
                       r"without an image in .*, e\.g\. \['TCGA-ZZ-ZZZZ-DX1"):  # fmt: skip
        load_bcss_datalist(tmp_path)


@pytest.mark.parametrize("keep", ["rgbs_colorNormalized", "masks"], ids=["no-masks", "no-images"])
def test_missing_folder(tmp_path: Path, keep: str) -> None:
    (tmp_path / keep).mkdir()
    expected = r"expected an image folder \(rgbs_colorNormalized/ or images/\) and masks/ in .*; found \["
    with pytest.raises(DataError, match=expected):
        load_bcss_datalist(tmp_path)


def test_size_mismatch_names_both_files(tmp_path: Path) -> None:
    write_dataset(tmp_path, tiles=1)
    name = roi_name(PATIENTS[3], 5)
    write_pair(tmp_path, name, image_size=(SIZE[0] + 1, SIZE[1]))
    with pytest.raises(DataError, match=rf"image .*rgbs_colorNormalized/{name} is 25x16 but mask .*masks/{name} "
                       r"is 24x16 \(width x height\)"):  # fmt: skip
        load_bcss_datalist(tmp_path, check_images=False)


def test_rgb_mask_is_rejected(tmp_path: Path) -> None:
    write_dataset(tmp_path, tiles=1)
    Image.new("RGB", SIZE).save(tmp_path / "masks" / roi_name(PATIENTS[0], 0))
    with pytest.raises(DataError, match=r"has PIL mode RGB; expected one channel"):
        load_bcss_datalist(tmp_path)


def test_unknown_mask_codes(tmp_path: Path) -> None:
    write_dataset(tmp_path, tiles=1)
    name = roi_name(PATIENTS[2], 7)
    codes = np.full(SIZE[::-1], 1, np.uint8)
    codes[:2, :3], codes[5, 5] = 22, 200
    write_pair(tmp_path, name, codes)
    with pytest.raises(DataError, match=rf"mask .*masks/{name} holds code\(s\) 22 \(6 px\), 200 \(1 px\) not in the "
                       r"code table; known: \[0, 1, 2, .*, 21\]"):  # fmt: skip
        load_bcss_datalist(tmp_path)
    assert sum(len(items) for items in load_bcss_datalist(tmp_path, check_images=False).values()) == 9


def test_validate_counts_codes(tmp_path: Path) -> None:
    codes = np.array([[0, 1, 1], [7, 10, 10]], np.uint8)
    Image.fromarray(codes).save(tmp_path / "m.png")
    counts = validate_bcss_masks([tmp_path / "m.png"])[str(tmp_path / "m.png")]
    assert counts.shape == (256,) and {c: int(counts[c]) for c in np.flatnonzero(counts)} == {0: 1, 1: 2, 7: 1, 10: 2}


@pytest.mark.parametrize("val, test", [(0.5, 0.5), (-0.1, 0.2), (0.2, 1.0)], ids=["sum-1", "negative", "test-1"])
def test_bad_fractions(tmp_path: Path, val: float, test: float) -> None:
    with pytest.raises(ConfigError, match="val_fraction and test_fraction must lie in"):
        load_bcss_datalist(write_dataset(tmp_path, tiles=1), val_fraction=val, test_fraction=test)


def test_empty_split_hint(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"split 'validation' is empty .*raise val_fraction \(now 0\.0\)"):
        load_bcss_datalist(write_dataset(tmp_path, tiles=1), val_fraction=0.0)


def test_summary_shows_class_presence(tmp_path: Path) -> None:
    write_dataset(tmp_path, tiles=1)
    tumour = np.full(SIZE[::-1], 1, np.uint8)
    tumour[0, 0] = 7
    write_pair(tmp_path, roi_name(PATIENTS[0], 0), tumour)  # replaces the all-stroma mask
    datalist = load_bcss_datalist(tmp_path, val_fraction=0.25, test_fraction=0.25)
    lines = summarise_bcss_datalist(datalist, tmp_path).splitlines()
    assert lines[1].split()[1:] == ["4", "2", "2"] and lines[3].startswith("tumor")
    assert lines[3].split()[1:].count("0.0%") == 2 and lines[4].split()[1:].count("100.0%") == 2


@pytest.mark.parametrize("folder", ["rgbs_colorNormalized", "masks"], ids=["image", "mask"])
@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_empty_or_truncated_files_are_named(tmp_path: Path, folder: str, damage: str) -> None:
    write_dataset(tmp_path)
    path = tmp_path / folder / roi_name(PATIENTS[1], 1)
    data = path.read_bytes()
    path.write_bytes(b"" if damage == "empty" else data[: len(data) - 12])
    why = "is empty" if damage == "empty" else "is a truncated PNG"
    with pytest.raises(DataError, match=rf"BCSS .*: 1 image file\(s\) are empty, truncated .*: {path} {why}"):
        load_bcss_datalist(tmp_path)
    if damage == "empty":  # the header-only size check still names the file without check_images
        with pytest.raises(DataError, match=rf"BCSS: cannot read {'image' if folder != 'masks' else 'mask'} {path}"):
            load_bcss_datalist(tmp_path, check_images=False)
