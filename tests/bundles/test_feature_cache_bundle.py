"""The chest bundle with configs/finetune/lp_cached.json, and the probe-cutoff command on the bundle."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from monai.utils import set_determinism

from common.cli import main
from common.errors import ConfigError
from common.finetune.feature_cache import CachedFeatureDataset
from common.networks import build_classifier
from tests.bundles.conftest import CHEST_BUNDLE, root_cause, run_workflow, tiny_overrides

CONFIGS = CHEST_BUNDLE / "configs"
LP_CACHED = CHEST_BUNDLE.parents[1] / "configs" / "finetune" / "lp_cached.json"


def test_lp_cached_trains_the_head_on_cached_features_and_saves_the_full_model(tmp_path: Path,
                                                                              chest_dataset: Path) -> None:
    shutil.copytree(CONFIGS, tmp_path / "configs")
    overrides = tiny_overrides(tmp_path, chest_dataset)
    workflow = run_workflow(tmp_path / "configs", ["train.json", LP_CACHED], "train", **overrides)
    dataset = workflow.parser.get_parsed_content("train#dataloader#dataset")
    assert isinstance(dataset, CachedFeatureDataset)
    assert dataset.features.shape == (len(dataset), 1024)  # pooled DenseNet-121 features
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.state.iteration > 0
    assert trainer.network is workflow.parser.get_parsed_content("feature_cache").top

    state = torch.load(tmp_path / "models" / "model.pt", map_location="cpu", weights_only=True)
    build_classifier("densenet121", 14).load_state_dict(state, strict=True)
    set_determinism(seed=overrides.get("seed", 0))  # the bundle's initialize seeds before building @network
    initial = build_classifier("densenet121", 14).state_dict()
    set_determinism(seed=None)
    assert {k for k, v in state.items() if not torch.equal(v, initial[k])} == {"classifier.weight", "classifier.bias"}

    # inference.json, unchanged, runs the checkpoint.
    run_workflow(tmp_path / "configs", ["inference.json"], "infer", bundle_root=str(tmp_path),
                 dataset_dir=str(chest_dataset / "images"), image_size=32, num_workers=0)
    assert (tmp_path / "predictions" / "predictions.csv").is_file()


def test_lp_cached_refuses_random_augmentation(tmp_path: Path, chest_dataset: Path) -> None:
    flip = [{"_target_": "RandFlipd", "keys": "image", "prob": 0.5, "spatial_axis": 1}]
    with pytest.raises(RuntimeError) as info:
        run_workflow(CONFIGS, ["train.json", LP_CACHED], "train",
                     **{**tiny_overrides(tmp_path, chest_dataset), "augmentation": flip})
    assert isinstance(root_cause(info.value), ConfigError)
    assert "training transforms are random (RandFlipd)" in str(root_cause(info.value))


def test_probe_cutoff_command_prints_one_row_per_layer(chest_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["probe-cutoff", "--bundle", str(CHEST_BUNDLE), "--dataset-dir", str(chest_dataset), "--layers",
            "conv5_block16_2_conv", "features.denseblock3", "--pretrained", "none", "--image-size", "32",
            "--num-workers", "0"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["layer", "features.denseblock3", "conv5_block16_2_conv"]
    assert [line.split()[1] for line in lines[1:]] == ["1024", "32"]
    assert sum("* best" in line for line in lines) == 1
    assert main([*argv[:-6], "features.denseblok3", *argv[-6:]]) == 2  # unknown layer: one-line error
    assert "did you mean: features.denseblock3" in capsys.readouterr().err
