"""Mammography-specific bundle tests: the preprocessing chain on a generated DICOM mammogram."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser

from common.synthetic.mammo import write_mammogram_dicom
from common.synthetic.mammo_render import MammoFinding, render_mammogram
from tests.bundles.conftest import MAMMO_BUNDLE


def _preprocess(item: dict, overrides: dict | None = None) -> dict:
    parser = ConfigParser()
    parser.read_config(str(MAMMO_BUNDLE / "configs" / "inference.json"))
    parser.update({"image_size": 128, **(overrides or {})})
    return parser.get_parsed_content("preprocessing")(item)


def test_training_preprocessing_keeps_only_image_and_label(mammo_dataset: Path) -> None:
    item = json.loads((mammo_dataset / "datalist.json").read_text())["training"][0]
    parser = ConfigParser()
    parser.read_config(str(MAMMO_BUNDLE / "configs" / "train.json"))
    parser.update({"image_size": 64, "dataset_dir": str(mammo_dataset)})
    out = parser.get_parsed_content("train#preprocessing")({**item, "image": str(mammo_dataset / item["image"])})
    assert set(out) == {"image", "label"} and out["image"].shape == (3, 64, 64)
    assert out["label"].tolist() == item["label"]


def test_burned_in_text_becomes_background(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    pixels, (x0, y0, x1, y1) = render_mammogram([MammoFinding("mass", True)], "R", "MLO", rng, image_size=256)
    assert pixels[y0:y1, x0:x1].max() > np.percentile(pixels, 50)  # the text is really burned in
    path = write_mammogram_dicom(tmp_path / "m.dcm", pixels, "P_1", "R", "MLO", "full mammogram images",
                                 ("1.2.3.1", "1.2.3.2", "1.2.3.3"))
    parser = ConfigParser()
    parser.read_config(str(MAMMO_BUNDLE / "configs" / "inference.json"))
    item = parser.get_parsed_content("load_image")({"image": str(path), "laterality": "R", "view": "MLO"})
    masked = parser.get_parsed_content("artifact_mask")(item)
    image = masked["image"][0].numpy()
    width = image.shape[1]
    if masked["flipped"]:  # a right breast is turned to face left: the text box moves with it
        x0, x1 = width - x1, width - x0
    assert np.all(image[y0:y1, x0:x1] == 0)
    breast = masked["breast_mask"][0].numpy() > 0
    assert breast.mean() > 0.2 and np.all(image[~breast] == 0)
    full = _preprocess({"image": str(path), "laterality": "R", "view": "MLO"})
    assert full["image"].shape == (3, 128, 128) and torch.isfinite(full["image"]).all()
