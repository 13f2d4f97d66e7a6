"""Synthetic mammography: the renderer, real DICOM files, both native layouts, adapter round trips, the signal."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from common.data.cbis_ddsm import load_cbis_ddsm_datalist
from common.data.inbreast import BIRADS_VALUES, load_inbreast_datalist, read_inbreast_csv
from common.errors import ConfigError
from common.synthetic.mammo import (
    CALC_CSV_HEADER,
    INBREAST_CSV_HEADER,
    MAMMOGRAPHY_SOP_CLASS_UID,
    MASS_CSV_HEADER,
    generate_cbis_ddsm,
    generate_inbreast,
    sample_cbis_ddsm_breasts,
)
from common.synthetic.mammo_render import MammoFinding, render_mammogram
from common.transforms import ArtifactMask, read_radiograph
from common.transforms.artifact_mask import find_anatomy_mask

VIEWS = [("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")]
VIEW_IDS = ["L-CC", "L-MLO", "R-CC", "R-MLO"]


@pytest.fixture(scope="module")
def cbis(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_cbis_ddsm(tmp_path_factory.mktemp("cbis"), n_patients=16, image_size=96, seed=2)


@pytest.mark.parametrize("side, view", VIEWS, ids=VIEW_IDS)
def test_render_geometry_text_and_marker(side: str, view: str) -> None:
    pixels, (x0, y0, x1, y1) = render_mammogram([MammoFinding("mass", True)], side, view, np.random.default_rng(0), 128)
    assert pixels.shape == (128, 96) and pixels.dtype == np.uint16 and pixels.max() == 65535
    np.testing.assert_array_equal(pixels, render_mammogram([MammoFinding("mass", True)], side, view,
                                                           np.random.default_rng(0), 128)[0])  # fmt: skip
    image = pixels.astype(np.float32) / 65535
    breast = find_anatomy_mask(image)
    chest_wall = slice(0, 48) if side == "L" else slice(48, 96)
    assert breast[:, chest_wall].sum() > 3 * (breast.sum() - breast[:, chest_wall].sum())
    assert not breast[y0:y1, x0:x1].any() and image[y0:y1, x0:x1].max() > 0.8  # text, off the breast
    far = slice(48, 96) if side == "L" else slice(0, 48)
    assert (image[100:, far] > 0.99).sum() >= 9 and not breast[100:, far].any()  # bright marker square
    wall_corner = image[2:12, 2:12] if side == "L" else image[2:12, -12:-2]
    assert (wall_corner.mean() > 0.6) == (view == "MLO")  # pectoral muscle only on MLO


@pytest.mark.parametrize("side, view", VIEWS, ids=VIEW_IDS)
def test_artifact_mask_clears_the_text_box(side: str, view: str) -> None:
    pixels, (x0, y0, x1, y1) = render_mammogram([], side, view, np.random.default_rng(4), 128)
    result = ArtifactMask(mode="mammography", remove_pectoral=True).compute(pixels[None] / 65535.0, view=view)
    out = np.asarray(result.image)[0]
    out = out[:, ::-1] if result.flipped else out
    assert result.laterality == side and out[y0:y1, x0:x1].max() == 0.0 and out.max() > 0.3
    assert result.pectoral_removed == (view == "MLO")


@pytest.mark.parametrize(
    "args",
    [([], "B", "CC", 128), ([], "L", "ML", 128), ([], "L", "CC", 32), ([MammoFinding("cyst", True)], "L", "CC", 128)],
    ids=["laterality", "view", "size", "kind"],
)  # fmt: skip
def test_render_rejects_bad_arguments(args: tuple) -> None:
    findings, side, view, size = args
    with pytest.raises(ConfigError):
        render_mammogram(findings, side, view, np.random.default_rng(0), size)


def spot_density(pixels: np.ndarray) -> float:
    """Highest local density of small bright spots (white top-hat) inside the breast."""
    image = pixels.astype(np.float32) / 65535
    breast = cv2.erode(find_anatomy_mask(image).astype(np.uint8), np.ones((5, 5), np.uint8))
    tophat = cv2.morphologyEx(image, cv2.MORPH_TOPHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    spots = ((tophat > 0.08) & (breast > 0)).astype(np.float32)
    window = int(0.08 * image.shape[0]) | 1
    return float(cv2.boxFilter(spots, -1, (window, window)).max())


def test_malignant_signal_is_learnable() -> None:
    """A hand-made feature separates 20 malignant from 20 benign renders well above chance (AUC 0.5)."""
    scores: dict[bool, list[float]] = {True: [], False: []}
    for index in range(40):
        malignant, kind = index % 2 == 0, ("mass", "calcification")[(index // 2) % 2]
        side, view = VIEWS[(index // 4) % 4]
        pixels, _ = render_mammogram([MammoFinding(kind, malignant)], side, view, np.random.default_rng(index), 192)
        scores[malignant].append(spot_density(pixels))
    pos, neg = np.array(scores[True])[:, None], np.array(scores[False])[None, :]
    auc = float((pos > neg).mean() + 0.5 * (pos == neg).mean())
    assert auc > 0.85, f"top-hat spot density AUC {auc:.2f}"


def test_cbis_csvs_have_the_released_headers(cbis: Path) -> None:
    for kind, header in (("mass", MASS_CSV_HEADER), ("calc", CALC_CSV_HEADER)):
        for split in ("train", "test"):
            with (cbis / f"{kind}_case_description_{split}_set.csv").open(newline="") as handle:
                rows = list(csv.reader(handle))
            assert tuple(rows[0]) == header and all(len(row) == 14 for row in rows)
    assert "breast_density" in MASS_CSV_HEADER and "breast density" in CALC_CSV_HEADER


def test_cbis_round_trip_labels_and_decoys(cbis: Path) -> None:
    breasts = sample_cbis_ddsm_breasts(16, seed=2)
    expected = {
        (b.patient_id, b.laterality, view): ([float("MALIGNANT" in b.pathologies)], b.folder(view), b.split)
        for b in breasts
        for view in b.views
    }
    datalist = load_cbis_ddsm_datalist(cbis, val_fraction=0.2, seed=0)
    got = {(it["patient_id"], it["laterality"], it["view"]): (it, split) for split, items in datalist.items()
           for it in items}  # fmt: skip
    assert set(got) == set(expected)
    for key, (item, split) in got.items():
        label, folder, official = expected[key]
        assert item["label"] == label and (split == "test") == (official == "test")
        parts = item["image"].split("/")
        assert parts[:2] == ["CBIS-DDSM", folder] and len(parts) == 5 and parts[-1] == "1-1.dcm"
    decoys = sorted((cbis / "CBIS-DDSM").glob("*_[0-9]/*/*/1-1.dcm"))
    assert decoys and all(pydicom.dcmread(path).SeriesDescription == "ROI mask images" for path in decoys)


def test_cbis_dicoms_are_16_bit_mammograms(cbis: Path) -> None:
    datalist = load_cbis_ddsm_datalist(cbis, val_fraction=0.2)
    for item in datalist["test"][:4]:
        path = cbis / item["image"]
        ds = pydicom.dcmread(path)
        assert (ds.Modality, ds.SOPClassUID, ds.file_meta.TransferSyntaxUID) == (
            "MG", MAMMOGRAPHY_SOP_CLASS_UID, pydicom.uid.ExplicitVRLittleEndian,
        )  # fmt: skip
        assert (ds.BitsStored, ds.PhotometricInterpretation, ds.pixel_array.dtype) == (16, "MONOCHROME2", np.uint16)
        assert (ds.ImageLaterality, ds.ViewPosition, ds.SeriesDescription) == (
            item["laterality"], item["view"], "full mammogram images",
        )  # fmt: skip
        image, meta = read_radiograph(path)
        assert image.shape == (96, 72) and image.dtype == np.float32 and meta["voi"] == "bit depth 16"
        assert 0.0 <= image.min() and image.max() == 1.0


def test_generators_are_deterministic(tmp_path: Path) -> None:
    for name, generate in (("cbis", generate_cbis_ddsm), ("inbreast", generate_inbreast)):
        first = generate(tmp_path / f"{name}-a", n_patients=3, image_size=64, seed=1)
        second = generate(tmp_path / f"{name}-b", n_patients=3, image_size=64, seed=1)
        files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
        assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
        third = generate(tmp_path / f"{name}-c", n_patients=3, image_size=64, seed=2)
        assert sorted(p.relative_to(third) for p in third.rglob("*") if p.is_file()) != files


def test_inbreast_layout_and_round_trip(tmp_path: Path) -> None:
    root = generate_inbreast(tmp_path, n_patients=12, image_size=64, seed=3)
    lines = (root / "INbreast.csv").read_text().splitlines()
    assert lines[0] == ";".join(INBREAST_CSV_HEADER) and lines[1].startswith("removed;;")
    rows = {row.number: row for row in read_inbreast_csv(root / "INbreast.csv")}
    datalist = load_inbreast_datalist(root, val_fraction=0.2, test_fraction=0.2, seed=0)
    items = [item for split in datalist.values() for item in split]
    assert len(items) == len(rows) == len(list((root / "AllDICOMs").glob("*.dcm")))
    for item in items:
        number = Path(item["image"]).name.split("_")[0]
        assert item["birads"] == rows[number].birads
        assert item["label"] == [float(BIRADS_VALUES.index(item["birads"]) >= BIRADS_VALUES.index("4a"))]
        ds = pydicom.dcmread(root / item["image"])
        assert (ds.ImageLaterality, ds.ViewPosition, ds.PatientID) == (
            item["laterality"],
            item["view"],
            item["patient_id"],
        )
    image, _ = read_radiograph(root / items[0]["image"])
    assert image.shape == (64, 48)


@pytest.mark.parametrize("kwargs", [{"n_patients": 1}, {"test_fraction": 1.0}], ids=["patients", "fraction"])
def test_cbis_generator_rejects_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        generate_cbis_ddsm(tmp_path, **{"n_patients": 4, "image_size": 64, **kwargs})
