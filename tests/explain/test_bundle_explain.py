"""The chest bundle's explain.json overlay and ``python -m common explain-eval`` on a tiny trained model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.cli import main
from common.errors import DataError
from common.explain.bundle import evaluate_pointing_game
from common.synthetic import make_embedded_dataset
from tests.bundles.conftest import CHEST_BUNDLE, MAMMO_BUNDLE, run_workflow, tiny_overrides

SIZE = 32


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(bundle root with configs/ and a 1-epoch ResNet-18 at 32 px, dataset with boxes)."""
    dataset = tmp_path_factory.mktemp("cxr_boxes")
    make_embedded_dataset("chestxray14", dataset, {"n_patients": 20, "images_per_patient": (1, 2), "image_size": 48,
                                                   "seed": 5, "prevalence": 0.4}, {"val_fraction": 0.25, "seed": 0})
    root = tmp_path_factory.mktemp("chest_bundle")
    shutil.copytree(CHEST_BUNDLE / "configs", root / "configs")
    run_workflow(root / "configs", ["train.json"], "train", **tiny_overrides(root, dataset, SIZE), arch="resnet18")
    return root, dataset


def test_explain_eval_writes_json_and_table(trained: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    root, dataset = trained
    assert main(["explain-eval", "--bundle-root", str(root), "--dataset-dir", str(dataset), "--n-boot", "50"]) == 0
    assert "| finding | boxes |" in capsys.readouterr().out
    result = json.loads((root / "explanations" / "pointing_game.json").read_text())
    test_items = json.loads((dataset / "datalist.json").read_text())["test"]
    n_boxes = sum(len(item.get("boxes", [])) for item in test_items)
    assert result["all"]["n_boxes"] == n_boxes > 0
    assert result["model"] == {"arch": "resnet18", "target_layer": "layer4", "image_size": SIZE,
                               "bundle_root": str(root)}  # fmt: skip
    for summary in result["findings"].values():
        lo, hi = summary["hit_rate_ci95"]
        assert 0 <= lo <= summary["hit_rate"] <= hi <= 1 and 0 < summary["random_baseline"] < 1
    assert (root / "explanations" / "pointing_game.md").read_text().startswith("Pointing game")


def test_explain_eval_needs_boxes(trained: tuple[Path, Path]) -> None:
    root, dataset = trained
    with pytest.raises(DataError, match=r"no_boxes.json: no item of split 'validation' has 'boxes'"):
        evaluate_pointing_game(root, dataset, _without_boxes(dataset, "validation"), "validation")


def _without_boxes(dataset: Path, split: str) -> Path:
    datalist = json.loads((dataset / "datalist.json").read_text())
    for item in datalist[split]:
        item.pop("boxes", None)
    out = dataset / "no_boxes.json"
    out.write_text(json.dumps(datalist))
    return out


def test_explain_overlay_saves_maps_and_overlays(trained: tuple[Path, Path]) -> None:
    root, dataset = trained
    run_workflow(root / "configs", ["inference.json", "explain.json"], "infer", bundle_root=str(root),
                 dataset_dir=str(dataset), datalist=str(dataset / "datalist.json"), image_size=SIZE, arch="resnet18",
                 num_workers=0, explain_findings=["Mass", "Nodule"])  # fmt: skip
    n_test = len(json.loads((dataset / "datalist.json").read_text())["test"])
    maps = sorted((root / "explanations").glob("*_Mass.npy"))
    assert len(maps) == n_test and len(list((root / "explanations").glob("*_Nodule.png"))) == n_test
    cam = np.load(maps[0])
    assert cam.shape == (SIZE, SIZE) and 0 <= cam.min() and cam.max() <= 1
    assert np.asarray(Image.open(maps[0].with_suffix(".png"))).shape == (SIZE, SIZE, 3)


def test_mammography_explain_overlay_with_swin_t(tmp_path: Path, mammo_dataset: Path) -> None:
    """The mammography bundle's explain.json: Grad-CAM of its default Swin-T on the DICOM test images."""
    shutil.copytree(MAMMO_BUNDLE / "configs", tmp_path / "configs")
    run_workflow(tmp_path / "configs", ["train.json"], "train", **tiny_overrides(tmp_path, mammo_dataset, 64))
    run_workflow(tmp_path / "configs", ["inference.json", "explain.json"], "infer", bundle_root=str(tmp_path),
                 dataset_dir=str(mammo_dataset), datalist=str(mammo_dataset / "datalist.json"), image_size=64,
                 num_workers=0, explain_findings=["malignant"])  # fmt: skip
    n_test = len(json.loads((mammo_dataset / "datalist.json").read_text())["test"])
    maps = sorted((tmp_path / "explanations").glob("*_malignant.npy"))
    assert len(maps) == n_test and len(list((tmp_path / "explanations").glob("*_malignant.png"))) == n_test
    assert np.load(maps[0]).shape == (64, 64)


def test_output_names_keep_stems_unless_they_collide() -> None:
    from common.explain.bundle import output_names

    assert output_names(["/d/images/a.png", "/d/images/b.png"]) == {"/d/images/a.png": "a", "/d/images/b.png": "b"}
    cbis = ["/d/CBIS-DDSM/Mass-Training_P_1_LEFT_CC/1.2.3/1-1.dcm", "/d/CBIS-DDSM/Calc-Test_P_2_LEFT_CC/4.5/1-1.dcm"]
    assert output_names(cbis) == {cbis[0]: "Mass-Training_P_1_LEFT_CC__1.2.3__1-1",
                                  cbis[1]: "Calc-Test_P_2_LEFT_CC__4.5__1-1"}  # fmt: skip
