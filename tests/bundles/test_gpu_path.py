"""The GPU training path's switches on every bundle, exercised on CPU tensors: augmentation in batch
(augment_device='gpu' runs it on the training device, here the CPU), channels_last, plain tensors into the network,
then evaluation and inference from the trained weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from common.engines import PlainTensorBatch
from common.transforms import BatchAugment
from tests.bundles.conftest import ALL_BUNDLES, BUNDLE_DATA, BUNDLES, SEGMENTATION_BUNDLES, run_workflow, tiny_overrides

SEG = {"patch_size": 64, "samples_per_image": 2, "batch_size": 4, "feature_size": 12, "sw_batch_size": 2}
GPU_PATH = {"augment_device": "gpu", "channels_last": True, "flip_prob": 1.0}


def _overrides(name: str, root: Path, request: pytest.FixtureRequest) -> dict:
    if name in SEGMENTATION_BUNDLES:
        overrides = {**tiny_overrides(root, request.getfixturevalue("histo_dataset"), 64), **SEG}
        overrides.pop("image_size")
        return overrides
    fixture, size = BUNDLE_DATA[name]
    return tiny_overrides(root, request.getfixturevalue(fixture), size)


@pytest.mark.parametrize("name", ALL_BUNDLES)
def test_augmentation_moves_out_of_the_workers_into_prepare_batch(name: str) -> None:
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / name / "configs" / "train.json"))
    parser.update({"augment_device": "gpu"})
    assert parser.get_parsed_content("dataset_augmentation") == []
    prepare = parser.get_parsed_content("train#prepare_batch")
    assert isinstance(prepare, PlainTensorBatch) and isinstance(prepare.augment, BatchAugment)
    assert len(prepare.augment.transforms) == len(parser.get_parsed_content("augmentation")) > 0
    parser.update({"augment_device": "cpu"})
    parser.parse(True)
    assert parser.get_parsed_content("train#prepare_batch").augment is None
    assert len(parser.get_parsed_content("dataset_augmentation")) > 0


@pytest.mark.parametrize("name", ["chest_xray_classification", "breast_histology_segmentation_unet"])
def test_batch_augmentation_trains_evaluates_and_infers(name: str, tmp_path: Path,
                                                        request: pytest.FixtureRequest) -> None:
    root = tmp_path / name
    shutil.copytree(BUNDLES / name, root, ignore=shutil.ignore_patterns("models", "eval", "logs", "predictions"))
    overrides = _overrides(name, root, request)
    seen: list[type] = []
    workflow = run_workflow(root / "configs", ["train.json"], "train", **overrides, **GPU_PATH)
    network = workflow.parser.get_parsed_content("network")
    assert network is not None and workflow.check_properties() == []
    handle = network.register_forward_pre_hook(lambda _, args: seen.append(type(args[0])))
    try:
        workflow.parser.get_parsed_content("validate#evaluator").run()
    finally:
        handle.remove()
    assert seen and set(seen) == {torch.Tensor}
    run_workflow(root / "configs", ["train.json", "evaluate.json"], "eval", **overrides, **GPU_PATH,
                 **({"n_boot": 10} if name not in SEGMENTATION_BUNDLES else {}))
    assert (root / "eval" / "metrics.json").is_file()
