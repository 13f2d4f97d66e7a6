"""Shared fixtures and helpers for the bundle tests: tiny generated datasets in each native layout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigWorkflow

from common.synthetic import make_embedded_dataset, make_general_medical_dataset

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
CHEST_BUNDLE = BUNDLES / "chest_xray_classification"
MAMMO_BUNDLE = BUNDLES / "breast_mammo_classification"
GENERAL_BUNDLE = BUNDLES / "medical_general_pretraining"
SCHEMA = REPO.parent / "shared" / "monai" / "meta_schema_20240725.json"

# bundle name -> (dataset fixture, image size used in tests)
BUNDLE_DATA = {"chest_xray_classification": ("chest_dataset", 32), "breast_mammo_classification": ("mammo_dataset", 64),
               "medical_general_pretraining": ("general_dataset", 32)}
# bundle name -> the split its evaluate.json reports on (stage 2 has no test split: it never sees a task's test images)
EVAL_SPLIT = {"medical_general_pretraining": "validation"}
SEGMENTATION_BUNDLES = ["breast_histology_segmentation_unet", "breast_histology_segmentation_swin_unetr"]
# single-label bundles: their train -> evaluate -> infer runs (binary and multi-class, grey and RGB) are in
# test_medical_image_classification.py (their metrics differ from the multi-label ones test_bundle_checks reads)
SINGLE_LABEL_BUNDLES = ["medical_image_classification"]
ALL_BUNDLES = [*BUNDLE_DATA, *SINGLE_LABEL_BUNDLES, *SEGMENTATION_BUNDLES]


@pytest.fixture(scope="session")
def chest_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 patients of 32 px synthetic radiographs in the native ChestX-ray14 layout, plus datalist.json."""
    root = tmp_path_factory.mktemp("chestxray14")
    make_embedded_dataset("chestxray14", root, {"n_patients": 24, "images_per_patient": (1, 2), "image_size": 32,
                                                "seed": 3}, {"val_fraction": 0.25, "seed": 0})
    return root


@pytest.fixture(scope="session")
def mammo_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic DICOM mammograms (96 px) in the CBIS-DDSM layout, plus datalist.json."""
    root = tmp_path_factory.mktemp("cbis_ddsm")
    make_embedded_dataset("cbis-ddsm", root, {"n_patients": 16, "image_size": 96, "seed": 2},
                          {"val_fraction": 0.3, "seed": 0})
    return root


@pytest.fixture(scope="session")
def histo_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic H&E tiles (96 px) with BCSS-coded masks in the BCSS layout, plus datalist.json."""
    root = tmp_path_factory.mktemp("bcss")
    make_embedded_dataset("bcss", root, {"n_patients": 6, "tiles_per_patient": 2, "tile_size": 96, "seed": 0},
                          {"val_fraction": 0.2, "test_fraction": 0.2, "seed": 0})
    return root


@pytest.fixture(scope="session")
def general_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stage-2 data from four tiny synthetic sources (ChestX-ray14 and BCSS layouts, a ChestMNIST npz, a folder of
    benign / malignant DICOM mammograms), merged into one weighted datalist.json (21 classes)."""
    root = tmp_path_factory.mktemp("general_medical")
    make_general_medical_dataset(root, seed=0, image_size=32, n_images=16)
    return root


def tiny_overrides(bundle_root: Path, dataset_dir: Path, image_size: int = 32) -> dict:
    """Overrides that make a bundle run in seconds on a CPU."""
    return {
        "bundle_root": str(bundle_root),
        "dataset_dir": str(dataset_dir),
        "pretrained": "none",
        "image_size": image_size,
        "epochs": 1,
        "batch_size": 8,
        "val_batch_size": 8,
        "num_workers": 0,
    }


def run_workflow(configs: Path, files: list[str | Path], workflow_type: str, **override) -> ConfigWorkflow:
    """Run config ``files`` (names under ``configs`` or paths) through MONAI's ConfigWorkflow."""
    workflow = ConfigWorkflow(
        config_file=[str(configs / f) if isinstance(f, str) else str(f) for f in files],
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        workflow_type=workflow_type,
        **override,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return workflow


def pydicom_test_file(name: str) -> str:
    """Path of pydicom's test file ``name`` (pydicom-data, from requirements-dev.txt); skip the test without it.

    Never downloads: pydicom would fetch a file missing locally from GitHub, which a machine without internet
    cannot reach (and tests must not need).
    """
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed (pip install pydicom-data, in requirements-dev.txt)")
    return str(path)


def multi_process_env() -> dict[str, str]:
    """Environment for a 2-process torchrun test: with fewer than 2 GPUs the ranks run on the CPU (gloo).

    The multi-GPU overlays put rank ``r`` on ``cuda:r`` whenever CUDA is available, so on a one-GPU machine rank 1
    would ask for a GPU that does not exist (and two ranks cannot share one under NCCL); hiding the GPU runs the
    same overlay as on a CPU machine.
    """
    env = dict(os.environ)
    if torch.cuda.is_available() and torch.cuda.device_count() < 2:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def root_cause(error: BaseException) -> BaseException:
    """MONAI wraps errors raised inside config expressions; the user-facing one is at the bottom."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error
