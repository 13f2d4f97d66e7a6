"""The MONAI Label infer task against the bundles' own inference (in process; the live server is test_server.py)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi import HTTPException
from PIL import Image

from common.bundle_runner import run_bundle
from common.label.bundles import NotTrainedError, Predictor
from common.label.infer import BundleInferTask


def _first_image(dataset: Path, suffix: str = ".png") -> Path:
    return next(p for p in sorted(dataset.rglob(f"*{suffix}")) if "mask" not in str(p).lower())


def test_classification_json_matches_bundle_inference(trained_chest, chest_dataset: Path, tmp_path: Path) -> None:
    image = _first_image(chest_dataset)
    task = BundleInferTask(trained_chest)
    file, result = task({"image": str(image)})
    assert file is None
    names = json.loads((trained_chest.source / "configs" / "metadata.json").read_text())
    expected_names = list(names["network_data_format"]["outputs"]["pred"]["channel_def"].values())
    assert [c["name"] for c in result["classes"]] == expected_names  # spelled as in metadata (Pleural_Thickening)
    assert result["positive"] == [c["name"] for c in result["classes"] if c["probability"] >= c["threshold"]]
    assert result["threshold_source"].startswith("0.5")
    assert result["model_version"] == trained_chest.version()

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(image, inputs / image.name)
    shared = tmp_path / "state"
    shutil.copytree(trained_chest.root / "models", shared / "models")
    run_bundle(trained_chest.source, ["inference.json"], "infer", state_root=shared, dataset_dir=str(inputs),
               image_size=32, num_workers=0)
    with open(shared / "predictions" / "predictions.csv") as handle:
        row = next(csv.DictReader(handle))
    own = np.array([float(row[name]) for name in expected_names])
    served = np.array([c["probability"] for c in result["classes"]])
    np.testing.assert_allclose(served, own, atol=1e-5)


def test_thresholds_come_from_a_newer_evaluation(trained_chest) -> None:
    names = trained_chest.class_names()
    report = trained_chest.root / "eval" / "metrics.json"
    report.parent.mkdir(exist_ok=True)
    per_class = [{"name": n, "at_threshold": {"threshold": 0.1 + 0.01 * i}} for i, n in enumerate(names)]
    report.write_text(json.dumps({"threshold_source": "validation", "per_class": per_class}))
    try:
        thresholds, source = trained_chest.thresholds()
        assert source.startswith("validation") and thresholds[3] == pytest.approx(0.13)
        import os

        stamp = trained_chest.model_path.stat().st_mtime_ns
        os.utime(report, ns=(stamp - 10**9, stamp - 10**9))
        assert trained_chest.thresholds()[1] == "0.5 (the evaluation is older than the model)"
    finally:
        report.unlink()


def test_segmentation_mask_equals_bundle_inference_on_a_non_square_tile(trained_unet, histo_dataset: Path,
                                                                        tmp_path: Path) -> None:
    tile = np.asarray(Image.open(_first_image(histo_dataset / "rgbs_colorNormalized")
                                 if (histo_dataset / "rgbs_colorNormalized").is_dir()
                                 else _first_image(histo_dataset)).convert("RGB"))
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    image = inputs / "tile_wide.png"
    Image.fromarray(np.ascontiguousarray(tile[:48, :80])).save(image)  # 48 rows x 80 columns
    file, result = BundleInferTask(trained_unet)({"image": str(image)})
    mask = np.asarray(Image.open(file))
    assert mask.shape == (48, 80) and mask.dtype == np.uint8
    assert mask.min() >= 1 and mask.max() <= 5  # 0 (don't care) is never predicted
    assert result["labels"] == {"tumor": 1, "stroma": 2, "inflammatory": 3, "necrosis": 4, "other": 5}

    shared = tmp_path / "state"
    shutil.copytree(trained_unet.root / "models", shared / "models")
    run_bundle(trained_unet.source, ["inference.json"], "infer", state_root=shared, dataset_dir=str(inputs),
               patch_size=64, sw_batch_size=2, num_workers=0)
    own = np.asarray(Image.open(shared / "predictions" / "tile_wide.png"))
    np.testing.assert_array_equal(mask, own)


def test_untrained_bundle_is_listed_and_answers_409(label_workspace, tmp_path: Path) -> None:
    bundle = label_workspace["breast_mammo_classification"]
    task = BundleInferTask(bundle)
    assert task.is_valid() and task.info()["trained"] is False and task.info()["labels"] == ["malignant"]
    with pytest.raises(HTTPException) as caught:
        task({"image": str(tmp_path / "x.dcm")})
    assert caught.value.status_code == 409 and "no trained model yet" in caught.value.detail
    with pytest.raises(NotTrainedError):
        Predictor(bundle).scores(tmp_path / "x.dcm")


def test_unreadable_image_is_400_naming_the_file(trained_chest, tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(HTTPException) as caught:
        BundleInferTask(trained_chest)({"image": str(bad)})
    assert caught.value.status_code == 400 and "broken.png" in caught.value.detail
    assert "\n" not in caught.value.detail


def test_predictor_reloads_when_the_model_file_changes(trained_chest, chest_dataset: Path) -> None:
    import torch

    image = _first_image(chest_dataset)
    predictor = Predictor(trained_chest)
    before, _ = predictor.scores(image)
    version = predictor.version
    model = trained_chest.model_path
    saved = model.read_bytes()
    card = model.with_name("model.json")
    saved_card = card.read_bytes()
    try:
        state = torch.load(model, weights_only=True)
        state = {k: (v + 0.05 if v.is_floating_point() else v) for k, v in state.items()}
        torch.save(state, model)
        card.unlink()  # an edited model no longer matches its card's sha256
        after, _ = predictor.scores(image)
        assert predictor.version != version
        assert not np.allclose(before, after)
    finally:
        model.write_bytes(saved)
        card.write_bytes(saved_card)


@pytest.mark.parametrize(("name", "dataset", "override"), [
    # ResNet-18 instead of the default Swin-T: the served arch must come from the checkpoint card
    ("breast_mammo_classification", "mammo_dataset", {"image_size": 64, "arch": "resnet18"}),
    ("medical_general_pretraining", "general_dataset", {"image_size": 32, "arch": "resnet18"}),
    ("breast_histology_segmentation_swin_unetr", "histo_dataset",
     {"patch_size": 64, "samples_per_image": 2, "sw_batch_size": 2}),
])
def test_the_other_bundles_answer_through_their_own_configs(label_workspace, name: str, dataset: str,
                                                            override: dict, request: pytest.FixtureRequest) -> None:
    from tests.label.conftest import train_into

    bundle, data = label_workspace[name], request.getfixturevalue(dataset)
    train_into(bundle, data, pretrained="none", epochs=1, batch_size=4, val_batch_size=4, num_workers=0, **override)
    suffix = ".dcm" if name.startswith("breast_mammo") else ".png"
    image = next(p for p in sorted(data.rglob(f"*{suffix}")) if "mask" not in str(p).lower() and "ROI" not in str(p))
    file, result = BundleInferTask(bundle)({"image": str(image)})
    names = bundle.class_names()
    if bundle.kind == "classification":
        assert file is None and [c["name"] for c in result["classes"]] == names
        assert all(0.0 <= c["probability"] <= 1.0 for c in result["classes"])
    else:
        mask = np.asarray(Image.open(file))
        with Image.open(image) as picture:
            assert mask.shape == (picture.height, picture.width)
        assert set(np.unique(mask)) <= set(range(1, len(names) + 1))
