"""Shared fixtures for the bundle smoke tests: a tiny generated ChestX-ray14-layout dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.data import generate_chestxray14, load_chestxray14_datalist
from common.io import atomic_write_json

REPO = Path(__file__).resolve().parents[2]
CHEST_BUNDLE = REPO / "bundles" / "chest_xray_classification"
SCHEMA = REPO.parent / "shared" / "monai" / "meta_schema_20240725.json"


@pytest.fixture(scope="session")
def chest_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 patients of 32 px synthetic radiographs in the native layout, plus datalist.json."""
    root = tmp_path_factory.mktemp("chestxray14")
    generate_chestxray14(root, n_patients=24, images_per_patient=(1, 2), image_size=32, seed=3)
    datalist = load_chestxray14_datalist(root, val_fraction=0.25, seed=0)
    atomic_write_json(root / "datalist.json", datalist)
    return root


def tiny_overrides(bundle_root: Path, dataset_dir: Path) -> dict:
    """Overrides that make a bundle run in seconds on a CPU."""
    return {
        "bundle_root": str(bundle_root),
        "dataset_dir": str(dataset_dir),
        "pretrained": "none",
        "image_size": 32,
        "epochs": 1,
        "batch_size": 8,
        "val_batch_size": 8,
        "num_workers": 0,
    }
