"""Grid files: expansion into cells and clear errors before anything runs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from common.errors import ConfigError
from common.experiments.cells import expand, pretrain_cells
from common.experiments.grid import load_grid, parse_grid
from common.networks import build_classifier


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "cxr"
    root.mkdir()
    (root / "datalist.json").write_text('{"training": [], "validation": [], "test": []}')
    return root


@pytest.fixture()
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A torch hub cache without any ImageNet file (as on a fresh offline machine)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


def _grid(data_dir: Path, **changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "t",
        "tasks": [{"bundle": "chest_xray_classification", "data": {"dataset_dir": str(data_dir)}}],
        "architectures": ["efficientnet_lite0", "resnet18"],
        "stage1": ["none"],
        "stage2": ["none"],
        "strategies": ["ft", {"name": "lp_ft", "params": {"lp_epochs": 1}}],
        "seeds": [0, 1, 2],
        "overrides": {"epochs": 2, "image_size": 32},
    }
    raw.update(changes)
    return raw


def test_expansion_is_the_full_product_in_order(data_dir: Path) -> None:
    cells = expand(parse_grid(_grid(data_dir)))
    assert len(cells) == 2 * 2 * 3
    assert cells[0].id == "chest_xray_classification__efficientnet_lite0__none__none__ft__seed0"
    assert cells[3].strategy.label == "lp_ft(lp_epochs=1)"
    assert len({c.id for c in cells}) == len(cells)
    assert [c.seed for c in cells[:3]] == [0, 1, 2]
    assert cells[0].describe()["stage2"] == "none" and cells[0].pretrain is None


def test_architecture_specific_strategy_parameters(data_dir: Path) -> None:
    cutoff = {"name": "cutoff", "arch_params": {"resnet18": {"cutoff_layer": "layer3.1.conv2"}}}
    grid = parse_grid(_grid(data_dir, strategies=["ft", cutoff]))
    assert grid.strategies[1].params_for("resnet18") == {"cutoff_layer": "layer3.1.conv2"}
    assert grid.strategies[1].params_for("efficientnet_lite0") == {}
    with pytest.raises(ConfigError, match="has no parameter cut_layer"):
        parse_grid(_grid(data_dir, strategies=[{"name": "cutoff", "arch_params": {"resnet18": {"cut_layer": "x"}}}]))


def test_repeats_give_seeds_from_zero(data_dir: Path) -> None:
    raw = _grid(data_dir, repeats=4)
    del raw["seeds"]
    assert parse_grid(raw).seeds == (0, 1, 2, 3)


def test_stage2_medical_adds_one_pretraining_run_per_backbone_and_stage1(data_dir: Path) -> None:
    raw = _grid(data_dir, stage1=["none", "imagenet"], stage2=["none", "medical"],
                architectures=["efficientnet_lite0"],
                pretraining={"data": {"dataset_dir": str(data_dir)}, "overrides": {"epochs": 1}})
    cells = expand(parse_grid(raw))
    assert len(cells) == 2 * 2 * 2 * 3
    runs = pretrain_cells(cells)
    assert [(p.arch, p.stage1) for p in runs] == [("efficientnet_lite0", "none"), ("efficientnet_lite0", "imagenet")]


def _stage2_bundle(folder: Path, arch: str) -> Path:
    """A trained stage-2 bundle folder: ``models/model.pt`` holding an ``arch`` classifier with 21 classes."""
    (folder / "models").mkdir(parents=True)
    torch.save(build_classifier(arch, 21).state_dict(), folder / "models" / "model.pt")
    return folder


def test_a_given_stage2_bundle_is_not_repeated_per_stage1(data_dir: Path, tmp_path: Path) -> None:
    stage2 = _stage2_bundle(tmp_path / "stage2", "efficientnet_lite0")
    cells = expand(parse_grid(_grid(data_dir, stage1=["none", "imagenet"], stage2=[f"bundle:{stage2}"],
                                    architectures=["efficientnet_lite0"])))
    assert len(cells) == 2 * 3 and {c.stage1 for c in cells} == {"n/a"}
    assert cells[0].stage2_label == "stage2"


def test_exclude_rules_drop_matching_cells(data_dir: Path) -> None:
    raw = _grid(data_dir, exclude=[{"arch": "resnet18", "strategy": "lp_ft"}, {"seed": 2}])
    cells = expand(parse_grid(raw))
    assert len(cells) == 2 * 2 * 2 - 2
    assert not any(c.arch == "resnet18" and c.strategy.name == "lp_ft" for c in cells)
    with pytest.raises(ConfigError, match=r"exclude\[0\]"):
        parse_grid(_grid(data_dir, exclude=[{"model": "x"}]))


def test_a_relative_stage2_bundle_is_resolved_against_the_grid_folder(data_dir: Path, tmp_path: Path) -> None:
    _stage2_bundle(tmp_path / "s2", "resnet18")
    grid = parse_grid(_grid(data_dir, stage2=["bundle:s2"], architectures=["resnet18"]), tmp_path)
    assert grid.stage2 == (f"bundle:{(tmp_path / 's2').resolve()}",)


def test_a_stage2_bundle_of_another_architecture_is_refused_before_running(data_dir: Path, tmp_path: Path) -> None:
    _stage2_bundle(tmp_path / "s2", "resnet18")
    with pytest.raises(ConfigError, match="does not fit bundle chest_xray_classification with architecture "
                                          "efficientnet_lite0"):
        parse_grid(_grid(data_dir, stage2=["bundle:s2"]), tmp_path)


def test_two_tasks_on_one_bundle_need_names(data_dir: Path) -> None:
    task = {"bundle": "chest_xray_classification", "data": {"dataset_dir": str(data_dir)}}
    with pytest.raises(ConfigError, match="both named 'chest_xray_classification'"):
        parse_grid(_grid(data_dir, tasks=[task, task]))
    cells = expand(parse_grid(_grid(data_dir, tasks=[{**task, "name": "site_a"}, {**task, "name": "site_b"}])))
    assert {c.describe()["bundle"] for c in cells} == {"site_a", "site_b"} and len(cells) == 2 * 2 * 2 * 3


def test_load_grid_reads_yaml_with_paths_relative_to_the_file(data_dir: Path, tmp_path: Path) -> None:
    raw = _grid(data_dir)
    raw["tasks"][0]["data"]["dataset_dir"] = "cxr"
    file = tmp_path / "g.yaml"
    file.write_text(yaml.safe_dump(raw))
    grid = load_grid(file)
    assert grid.tasks[0].data.dataset_dir == data_dir.resolve() and grid.source == file.resolve()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strategies": ["ft", "fine_tune_everything"]}, "unknown strategy 'fine_tune_everything'"),
        ({"strategies": [{"name": "lp_ft", "params": {"lp_epoch": 2}}]}, "has no parameter lp_epoch"),
        ({"architectures": ["resnet19"]}, "cannot build architecture 'resnet19'"),
        ({"tasks": [{"bundle": "chest_xray_classifier", "data": {}}]}, "unknown bundle 'chest_xray_classifier'"),
        ({"tasks": [{"bundle": "chest_xray_classification", "data": {"dataset_dir": "/nowhere/x"}}]},
         "folder not found: /nowhere/x"),
        ({"tasks": [{"bundle": "chest_xray_classification"}]}, "data is required"),
        ({"tasks": [{"bundle": "chest_xray_classification", "data": {"embedded": "mimic"}}]}, "unknown 'mimic'"),
        ({"stage2": ["medical"]}, "no 'pretraining' section"),
        ({"stage1": ["imagenet21k"]}, "not a stage-1 source"),
        ({"overrides": {"pretrained": "imagenet"}}, "sets pretrained"),
        ({"seeds": [0, 0]}, "distinct seeds"),
        ({"repeats": 3}, "both set"),
        ({"strategy": ["ft"]}, "unknown grid keys: strategy"),
        ({"tasks": []}, "'tasks' is empty"),
        ({"tracking": "wandb"}, "use none or mlflow"),
        ({"overrides": {"epoch": 3}}, "has no config id 'epoch', so the override would do nothing; did you mean"),
        ({"baseline": "FT"}, "'FT' is not one of the grid's strategies"),
        ({"stage2": ["bundle:/nowhere/s2"]}, "has no trained checkpoint"),
    ],
)
def test_bad_grids_fail_before_running(data_dir: Path, change: dict[str, Any], message: str) -> None:
    raw = _grid(data_dir)
    raw.update(copy.deepcopy(change))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_grid(raw)


def test_missing_datalist_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(ConfigError, match=r"datalist: file not found: .*d/datalist.json.*prepare-data"):
        parse_grid(_grid(tmp_path / "d"))


def test_imagenet_stage1_needs_the_file_in_the_hub_cache(data_dir: Path, empty_hub: Path) -> None:
    with pytest.raises(ConfigError, match=r"resnet18's ImageNet file .*resnet18-f37072fd.pth.*never downloads"):
        parse_grid(_grid(data_dir, stage1=["imagenet"]))
    # EfficientNet-Lite0's ImageNet weights ship in a package: no file needed.
    parse_grid(_grid(data_dir, stage1=["imagenet"], architectures=["efficientnet_lite0"]))


def test_segmentation_bundle_without_backbone_refuses_imagenet(data_dir: Path) -> None:
    raw = _grid(data_dir, stage1=["imagenet"], architectures=None,
                tasks=[{"bundle": "breast_histology_segmentation_swin_unetr", "data": {"dataset_dir": str(data_dir)}}])
    with pytest.raises(ConfigError, match="no classifier backbone"):
        parse_grid(raw)
