"""Fixtures for the MONAI Label tests: tiny datasets and bundles trained into a workspace in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("monailabel", reason="MONAI Label is not installed (requirements-label.txt)")

from fastapi import HTTPException  # noqa: E402

from common.bundle_runner import run_bundle  # noqa: E402
from common.label.bundles import LabelBundle, discover_bundles  # noqa: E402
from tests.bundles.conftest import (  # noqa: E402, F401 (shared session fixtures)
    chest_dataset,
    general_dataset,
    histo_dataset,
    mammo_dataset,
)

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
CHEST = "chest_xray_classification"
UNET = "breast_histology_segmentation_unet"
CHEST_TINY = {"pretrained": "none", "image_size": 32, "epochs": 1, "batch_size": 8, "val_batch_size": 8,
              "num_workers": 0}
UNET_TINY = {"pretrained": "none", "patch_size": 64, "samples_per_image": 2, "batch_size": 4, "epochs": 1,
             "val_batch_size": 4, "sw_batch_size": 2, "num_workers": 0}


def refused(call: object, *args: object) -> str:
    """Call ``call(*args)``, expect a one-line 400 and return its detail."""
    with pytest.raises(HTTPException) as caught:
        call(*args)  # type: ignore[operator]
    assert caught.value.status_code == 400
    assert "\n" not in caught.value.detail
    return caught.value.detail


def train_into(bundle: LabelBundle, dataset_dir: Path, **override: object) -> None:
    """Train ``bundle``'s own train.json into its workspace root on ``dataset_dir``."""
    run_bundle(bundle.source, ["train.json"], "train", state_root=bundle.root, dataset_dir=str(dataset_dir),
               **override)


@pytest.fixture(scope="session")
def label_workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LabelBundle]:
    """Every bundle discovered into one fresh workspace (nothing trained)."""
    return discover_bundles(BUNDLES, tmp_path_factory.mktemp("label_workspace"))


@pytest.fixture(scope="session")
def trained_chest(label_workspace: dict[str, LabelBundle], chest_dataset: Path) -> LabelBundle:  # noqa: F811
    """The chest bundle trained one epoch at 32 px into the workspace."""
    bundle = label_workspace[CHEST]
    train_into(bundle, chest_dataset, **CHEST_TINY)
    return bundle


@pytest.fixture(scope="session")
def trained_unet(label_workspace: dict[str, LabelBundle], histo_dataset: Path) -> LabelBundle:  # noqa: F811
    """The UNet bundle trained one epoch on 64 px patches into the workspace."""
    bundle = label_workspace[UNET]
    train_into(bundle, histo_dataset, **UNET_TINY)
    return bundle
