"""``common.label.studies``: the demo studies load in MONAI Label's LocalDatastore, labels are the synthetic truth,
foreign folders are refused, and ``python -m common.label studies`` works."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydicom
import pytest

pytest.importorskip("monailabel", reason="MONAI Label is not installed (requirements-label.txt)")

from monailabel.datastore.local import LocalDatastore  # noqa: E402

from common.data import (  # noqa: E402
    BCSS_GTRUTH_CODES,
    CHESTXRAY14_FINDINGS,
    build_code_lookup,
    load_bcss_datalist,
    load_cbis_ddsm_datalist,
    read_data_entry,
)
from common.errors import ConfigError, OutputError  # noqa: E402
from common.label.__main__ import main  # noqa: E402
from common.label.studies import (  # noqa: E402
    DEFAULT_COUNTS,
    STUDIES_MARKER,
    STUDY_EXTENSIONS,
    make_studies,
)
from common.synthetic.cxr import generate_chestxray14  # noqa: E402
from common.synthetic.histology import generate_bcss  # noqa: E402
from common.synthetic.mammo import generate_cbis_ddsm  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CHEST, MAMMO, HISTO = "chest_xray_classification", "breast_mammo_classification", "breast_histology_segmentation_unet"
PREFIX = {"chest": CHEST, "mammo": MAMMO, "histo": HISTO}
SMALL = {"image_size_cxr": 32, "image_size_mammo": 64, "tile_size": 32,
         "n_per_bundle": {CHEST: 3, MAMMO: 2, HISTO: 2}}  # fmt: skip


def _train_config(bundle: str) -> dict[str, Any]:
    return json.loads((REPO / "bundles" / bundle / "configs" / "train.json").read_text())


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _datastore(path: Path) -> LocalDatastore:
    return LocalDatastore(str(path), extensions=STUDY_EXTENSIONS, auto_reload=False)


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The default studies (12 chest, 8 mammography, 8 histology images at 256 px), seed 0."""
    dest = tmp_path_factory.mktemp("label_studies") / "studies"
    return dest, make_studies(dest, seed=0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three native layouts generated independently with the studies' seed and sizes (a superset of patients:
    an image's pixels and truth depend on the seed and its patient only)."""
    root = tmp_path_factory.mktemp("label_reference")
    generate_chestxray14(root / "chest", n_patients=16, images_per_patient=(1, 1), image_size=256, seed=0)
    generate_cbis_ddsm(root / "mammo", n_patients=8, image_size=256, seed=0)
    generate_bcss(root / "histo", n_patients=8, tiles_per_patient=1, tile_size=256, seed=0)
    return root


def test_datastore_lists_every_image_with_its_model(studies: tuple[Path, dict[str, Any]]) -> None:
    dest, summary = studies
    datastore = _datastore(dest)
    expected = sorted(f"{prefix}_{i:04d}" for prefix, bundle in PREFIX.items()
                      for i in range(1, DEFAULT_COUNTS[bundle] + 1))  # fmt: skip
    assert sorted(datastore.list_images()) == expected
    for image_id in expected:
        assert datastore.get_image_info(image_id)["model"] == PREFIX[image_id.split("_")[0]]
    assert summary["images"] == len(expected) == 28
    assert {name: entry["images"] for name, entry in summary["bundles"].items()} == DEFAULT_COUNTS


def test_labelled_fraction_is_labelled_after_reload(studies: tuple[Path, dict[str, Any]]) -> None:
    dest, summary = studies
    labelled = _datastore(dest).get_labeled_images("final")  # a fresh instance reconciles with the files
    for prefix, bundle in PREFIX.items():
        ours = [image_id for image_id in labelled if image_id.startswith(f"{prefix}_")]
        assert len(ours) == summary["bundles"][bundle]["labelled"] == DEFAULT_COUNTS[bundle] // 2, bundle
        extension = ".png" if prefix == "histo" else ".json"
        assert all((dest / "labels" / "final" / f"{image_id}{extension}").is_file() for image_id in ours)
    assert summary["labelled"] == len(labelled) == 14


def test_chest_findings_are_the_data_entry_labels(studies: tuple[Path, dict[str, Any]], reference: Path) -> None:
    records = read_data_entry(reference / "chest" / "Data_Entry_2017.csv")
    truth = {_digest((reference / "chest" / "images" / r.image).read_bytes()): r.labels for r in records}
    class_names = _train_config(CHEST)["class_names"]
    dest = studies[0]
    labels = sorted((dest / "labels" / "final").glob("chest_*.json"))
    assert labels
    for label in labels:
        content = json.loads(label.read_text())
        values = truth[_digest((dest / f"{label.stem}.png").read_bytes())]
        assert content == {"model": CHEST,
                           "findings": [n for n, v in zip(CHESTXRAY14_FINDINGS, values, strict=True) if v]}
        assert set(content["findings"]) <= set(class_names)


def test_mammography_findings_are_the_pathology(studies: tuple[Path, dict[str, Any]], reference: Path) -> None:
    datalist = load_cbis_ddsm_datalist(reference / "mammo", val_fraction=0.3)
    truth = {_digest(pydicom.dcmread(reference / "mammo" / item["image"]).pixel_array.tobytes()): item["label"][0]
             for items in datalist.values() for item in items}  # fmt: skip
    assert _train_config(MAMMO)["class_names"] == ["malignant"]
    dest = studies[0]
    for label in sorted((dest / "labels" / "final").glob("mammo_*.json")):
        image = pydicom.dcmread(dest / f"{label.stem}.dcm").pixel_array
        assert image.shape == (256, 192)
        malignant = truth[_digest(image.tobytes())]
        assert json.loads(label.read_text()) == {"model": MAMMO, "findings": ["malignant"] if malignant else []}


def test_masks_are_the_grouped_bcss_codes(studies: tuple[Path, dict[str, Any]], reference: Path) -> None:
    datalist = load_bcss_datalist(reference / "histo", val_fraction=0.2, test_fraction=0.2)
    masks = {_digest((reference / "histo" / item["image"]).read_bytes()): reference / "histo" / item["label"]
             for items in datalist.values() for item in items}  # fmt: skip
    lookup = build_code_lookup(BCSS_GTRUTH_CODES, _train_config(HISTO)["class_map"])  # the bundle's grouping
    dest = studies[0]
    labels = sorted((dest / "labels" / "final").glob("histo_*.png"))
    assert len(labels) == 4
    for label in labels:
        image_file = dest / label.name
        image, mask = cv2.imread(str(image_file), cv2.IMREAD_UNCHANGED), cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
        assert image.shape == (256, 256, 3) and mask.shape == image.shape[:2] and mask.dtype == np.uint8
        assert int(mask.max()) <= 5 and {1, 2} <= set(np.unique(mask).tolist())
        detailed = cv2.imread(str(masks[_digest(image_file.read_bytes())]), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(mask, lookup[detailed])


@pytest.mark.parametrize("kind", ["foreign_folder", "file"], ids=["foreign-folder", "file"])
def test_refuses_what_it_did_not_write(tmp_path: Path, kind: str) -> None:
    dest = tmp_path / "studies"
    if kind == "file":
        dest.write_text("not a folder")
    else:
        dest.mkdir()
        (dest / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=re.escape(str(dest))):
        make_studies(dest, **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["studies"]  # nothing written beside it
    if kind == "file":
        assert dest.read_text() == "not a folder"
    else:
        assert [p.name for p in dest.iterdir()] == ["notes.txt"] and (dest / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"n_per_bundle": {"medical_general_pretraining": 3}}, "unknown bundle"),
     ({"n_per_bundle": {CHEST: -1}}, "integers >= 0"), ({"labelled_fraction": 1.5}, r"\[0, 1\]"),
     ({"tile_size": 16}, "tile_size")],
    ids=["stage-2-bundle", "negative-count", "fraction", "size"],
)
def test_bad_arguments_write_nothing(tmp_path: Path, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_studies(tmp_path / "studies", **arguments)
    assert not any(tmp_path.iterdir())


def _contents(folder: Path) -> dict[str, Any]:
    """Every file's bytes, the datastore index without its timestamps."""
    files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    index = json.loads(files.pop("datastore_v2.json"))
    for obj in index["objects"].values():
        for entry in (obj["image"], *obj["labels"].values()):
            entry["info"].pop("ts")
    marker = json.loads(files.pop(STUDIES_MARKER))
    marker["summary"].pop("studies")
    return {"files": files, "index": index, "marker": marker}


def test_same_seed_same_studies_and_rerun_replaces(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    make_studies(first, seed=1, **SMALL)
    make_studies(second, seed=1, **SMALL)
    assert _contents(first) == _contents(second)
    (first / "labels" / "final" / "stale.json").write_text("{}")
    make_studies(first, seed=1, **SMALL)  # its own folder: replaced whole
    assert _contents(first) == _contents(second)
    make_studies(other, seed=2, **SMALL)
    assert _contents(other)["files"]["chest_0001.png"] != _contents(first)["files"]["chest_0001.png"]


@pytest.mark.parametrize("fraction", [0.0, 1.0], ids=["none", "all"])
def test_labelled_fraction_bounds(tmp_path: Path, fraction: float) -> None:
    summary = make_studies(tmp_path / "s", labelled_fraction=fraction, **SMALL)
    assert summary["labelled"] == (summary["images"] if fraction else 0) == len(
        _datastore(tmp_path / "s").get_labeled_images("final"))


def test_cli_help() -> None:
    result = subprocess.run([sys.executable, "-m", "common.label", "studies", "--help"], capture_output=True,
                            text=True, check=False, cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "usage: python -m common.label studies" in result.stdout
    assert "--output" in result.stdout and "--seed" in result.stdout


def test_cli_refusal_is_one_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data.csv").write_text("x")
    assert main(["studies", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot write studies to {tmp_path}: the folder is not empty")


def test_cli_writes_studies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "studies"
    assert main(["studies", "--output", str(dest), "--seed", "3", "--labelled-fraction", "0.25"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote 28 images (7 labelled) to {dest}: chest_xray_classification 12 (3 labelled")
    assert len(_datastore(dest).get_labeled_images("final")) == 7
