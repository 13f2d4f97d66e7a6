"""Chest-specific bundle tests: bad datalists, missing checkpoint, multi-GPU overlay, every strategy overlay.

The checks every bundle passes (MONAI verifications, train -> evaluate -> infer) are in test_bundle_checks.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.errors import DataError, WeightsError
from tests.bundles.conftest import (
    CHEST_BUNDLE,
    multi_process_env,
    pydicom_test_file,
    root_cause,
    run_workflow,
    tiny_overrides,
)

CONFIGS = CHEST_BUNDLE / "configs"


def test_inference_without_checkpoint_names_the_file(tmp_path: Path, chest_dataset: Path) -> None:
    shutil.copytree(CONFIGS, tmp_path / "configs")
    with pytest.raises(RuntimeError) as info:
        run_workflow(tmp_path / "configs", ["inference.json"], "infer", bundle_root=str(tmp_path),
                     dataset_dir=str(chest_dataset / "images"), num_workers=0)
    assert isinstance(root_cause(info.value), WeightsError)
    assert "models/model.pt" in str(root_cause(info.value))


@pytest.mark.parametrize("problem", ["missing-datalist", "wrong-label-length", "missing-image"])
def test_bad_datalist_is_a_data_error(tmp_path: Path, chest_dataset: Path, problem: str) -> None:
    datalist = json.loads((chest_dataset / "datalist.json").read_text())
    expected = {"missing-datalist": "datalist not found", "wrong-label-length": "has 13 label values, want 14",
                "missing-image": "image.s. of split 'training' not found"}[problem]
    if problem == "wrong-label-length":
        datalist["training"][1]["label"] = datalist["training"][1]["label"][:13]
    if problem == "missing-image":
        datalist["training"][0]["image"] = "images/not_there.png"
    if problem != "missing-datalist":
        (tmp_path / "datalist.json").write_text(json.dumps(datalist))
    overrides = {**tiny_overrides(tmp_path, chest_dataset), "datalist": str(tmp_path / "datalist.json")}
    with pytest.raises(RuntimeError) as info:
        run_workflow(CONFIGS, ["train.json"], "train", **overrides)
    assert isinstance(root_cause(info.value), DataError)
    assert re.search(expected, str(root_cause(info.value)))


@pytest.mark.parametrize(("strategy", "port"), [("lp_ft", 29534)], ids=["lp_ft"])
def test_multi_gpu_overlay_trains_with_two_processes(tmp_path: Path, chest_dataset: Path, strategy: str,
                                                     port: int) -> None:
    """torchrun with 2 CPU processes (gloo): the same overlay users run with NCCL on GPUs.

    LP-FT freezes the backbone and unfreezes it mid-run, which DistributedDataParallel only accepts with
    ``find_unused_parameters``; its second epoch is plain FT under DDP, so a separate FT run would repeat it
    (the stage-2 bundle's test runs its default FT with two processes too).
    """
    root = tmp_path / "bundle"
    shutil.copytree(CONFIGS, root / "configs")
    overlay = CHEST_BUNDLE.parents[1] / "configs" / "finetune" / f"{strategy}.json"
    configs = f"['{root / 'configs' / 'train.json'}','{overlay}','{root / 'configs' / 'multi_gpu_train.json'}']"
    overrides = {**tiny_overrides(root, chest_dataset), "batch_size": 4, "epochs": 2, "lp_epochs": 1}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
               "-m", "monai.bundle", "run", "--config_file", configs,
               "--logging_file", str(root / "configs" / "logging.conf")]
    for key, value in overrides.items():
        command += [f"--{key}", str(value)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False,
                            env=multi_process_env())
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert "classifier.weight" in state  # saved without the DistributedDataParallel "module." prefix


FINETUNE_OVERLAYS = sorted((CHEST_BUNDLE.parents[1] / "configs" / "finetune").glob("*.json"))


@pytest.mark.parametrize("overlay", FINETUNE_OVERLAYS, ids=[p.stem for p in FINETUNE_OVERLAYS])
def test_every_finetune_overlay_trains_one_epoch(tmp_path: Path, chest_dataset: Path, overlay: Path) -> None:
    shutil.copytree(CONFIGS, tmp_path / "configs")
    workflow = run_workflow(tmp_path / "configs", ["train.json", overlay], "train",
                            **{**tiny_overrides(tmp_path, chest_dataset), "val_interval": 2})
    strategy = workflow.parser.get_parsed_content("finetune")
    assert type(strategy).__name__ == json.loads(overlay.read_text())["finetune"]["_target_"].rsplit(".", 1)[1]
    assert workflow.parser.get_parsed_content("train#trainer").state.iteration > 0


def test_real_chest_radiograph_through_the_inference_chain() -> None:
    """RG1_UNCI.dcm (a real PA chest CR, MONOCHROME1, 15-bit) -> the documented network input."""
    from monai.bundle import ConfigParser

    real = pydicom_test_file("RG1_UNCI.dcm")
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    image = parser.get_parsed_content("preprocessing")({"image": real})["image"]
    meta = json.loads((CONFIGS / "metadata.json").read_text())["network_data_format"]["inputs"]["image"]
    assert tuple(image.shape) == (meta["num_channels"], *meta["spatial_shape"])
    assert image.dtype == torch.float32
    low, high = meta["value_range"]
    assert low <= float(image.min()) and float(image.max()) <= high
    assert float(image.std()) > 0.5  # CLAHE + ImageNet normalisation: a real spread, not a flat image


def test_efficientnet_lite0_with_real_imagenet_weights(tmp_path: Path, chest_dataset: Path) -> None:
    """`--arch efficientnet_lite0 --pretrained imagenet`: genuine ImageNet weights, offline, through the bundle."""
    shutil.copytree(CONFIGS, tmp_path / "configs")
    overrides = {**tiny_overrides(tmp_path, chest_dataset), "arch": "efficientnet_lite0", "pretrained": "imagenet"}
    workflow = run_workflow(tmp_path / "configs", ["train.json"], "train", **{**overrides, "learning_rate": 0.0})
    network = workflow.parser.get_parsed_content("network")
    from common.networks.efficientnet_lite import lite0_state_dict

    reference = lite0_state_dict()
    state = {k: v.cpu() for k, v in network.state_dict().items()}  # the network sits on cuda:0 where there is one
    assert torch.equal(state["_conv_stem.weight"], reference["_conv_stem.weight"])  # lr 0: weights as loaded
    assert state["_fc.weight"].shape == (14, 1280)
