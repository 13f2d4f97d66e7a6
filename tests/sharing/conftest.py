"""Fixtures for the sharing tests: a chest bundle trained and evaluated in seconds, as a site would pack it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from common.bundle_runner import copy_bundle, run_bundle
from tests.bundles.conftest import chest_dataset  # noqa: F401 (shared session fixture)

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
CHEST = "chest_xray_classification"
CHEST_TINY = {"pretrained": "none", "image_size": 32, "epochs": 1, "batch_size": 8, "val_batch_size": 8,
              "num_workers": 0}


@pytest.fixture(scope="session")
def trained_chest_bundle(tmp_path_factory: pytest.TempPathFactory, chest_dataset: Path) -> Path:  # noqa: F811
    """A copy of the chest bundle trained one epoch at 32 px and evaluated: configs, docs, LICENSE, models, eval, logs.

    Session-scoped and shared: tests copy it (``fresh_copy``) before changing anything.
    """
    root = copy_bundle(BUNDLES / CHEST, tmp_path_factory.mktemp("site_a") / CHEST)
    run_bundle(root, ["train.json"], "train", dataset_dir=str(chest_dataset), **CHEST_TINY)
    run_bundle(root, ["train.json", "evaluate.json"], "eval", dataset_dir=str(chest_dataset), **CHEST_TINY)
    return root


def fresh_copy(bundle: Path, destination: Path) -> Path:
    """A full copy of ``bundle`` at ``destination`` (every file, models and eval included)."""
    return Path(shutil.copytree(bundle, destination))
