"""Studies (d) and (e): per-task modality labels and overrides, the cells' settings, and the cut-off layers named."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

from common.errors import ConfigError
from common.experiments.__main__ import GRIDS_DIR
from common.experiments.cells import expand
from common.experiments.grid import parse_grid
from common.experiments.plan import plan_grid
from common.finetune.strategies.cutoff import KERAS_DENSENET121_ALIASES, split_at_layer
from common.networks import build_classifier
from tests.experiments.test_shipped_grids import _with_local_data, hub_with_imagenet_files  # noqa: F401 - fixture

STRATEGIES = ["ft", "lp", "lp_ft", "gradual_last_to_first", "gradual_first_to_last", "l1_sp", "l2_sp", "auto_rgn"]


def _grid(name: str, tmp_path: Path):  # noqa: ANN202 - a Grid
    file = GRIDS_DIR / f"{name}.yaml"
    return parse_grid(_with_local_data(yaml.safe_load(file.read_text()), tmp_path / "data"), file.parent, source=file)


def test_d_is_eight_strategies_by_three_architectures_by_five_modalities(
    tmp_path: Path, hub_with_imagenet_files: None  # noqa: F811 - the fixture
) -> None:
    grid = _grid("d_modalities", tmp_path)
    cells = expand(grid)
    cases = Counter((c.task.modality, c.arch) for c in cells)
    assert len(cases) == 5 * 3 and set(cases.values()) == {8 * 5}
    assert {c.task.modality for c in cells} == {"xray", "mri", "histology", "dermoscopy", "endoscopy"}
    assert [s.name for s in grid.strategies] == STRATEGIES and grid.seeds == (0, 1, 2, 3, 4)
    assert {c.describe()["modality"] for c in cells} == {"xray", "mri", "histology", "dermoscopy", "endoscopy"}


def test_d_cells_carry_their_task_settings_and_the_sp_reference_rate(
    tmp_path: Path, hub_with_imagenet_files: None  # noqa: F811 - the fixture
) -> None:
    plan = plan_grid(_grid("d_modalities", tmp_path), tmp_path / "run")
    settings = {(c.task.modality, c.strategy.name): job.settings for c, job in plan.cells if c.arch == "vgg19"}
    assert settings["histology", "ft"]["color"] == "rgb" and len(settings["histology", "ft"]["class_names"]) == 9
    assert settings["mri", "ft"]["color"] == "grey" and settings["xray", "lp"]["class_names"] == ["normal", "pneumonia"]
    assert settings["endoscopy", "lp_ft"]["lp_epochs"] == 3
    # SP strategies keep their overlay's SGD rate: nothing in the grid overrides learning_rate
    assert "learning_rate" not in settings["dermoscopy", "l2_sp"] and "learning_rate" not in settings["mri", "l1_sp"]
    assert {s["dataset_dir"] for s in settings.values()} == {str(tmp_path / "data" / n) for n in (
        "PneumoniaMNIST", "brain-tumor-mri", "PathMNIST", "HAM10000", "kvasir-dataset-v2")}


def test_e_compares_lp_with_cutoffs_with_and_without_augmentation(
    tmp_path: Path, hub_with_imagenet_files: None  # noqa: F811 - the fixture
) -> None:
    grid = _grid("e_cutoff_binary", tmp_path)
    plan = plan_grid(grid, tmp_path / "run")
    assert grid.baseline == "lp" and {c.arch for c, _ in plan.cells} == {"densenet121"}
    augmentation = {c.task.name: job.settings.get("augmentation", "default") for c, job in plan.cells}
    assert augmentation == {"effusion_augmented": "default", "effusion_no_augmentation": []}
    assert {c.task.modality for c, _ in plan.cells} == {"xray"}
    datalists = {job.settings["datalist"] for _, job in plan.cells}
    assert datalists == {str(tmp_path / "data" / "ChestX-ray14" / "datalist_effusion.json")}
    labels = Counter(c.strategy.label for c, _ in plan.cells)
    assert labels["cutoff(cutoff_layer=conv5_block16_2_conv)"] == 2 * 5 and len(labels) == 6


def test_e_cutoff_layers_are_distinct_cuts_of_densenet121() -> None:
    raw = yaml.safe_load((GRIDS_DIR / "e_cutoff_binary.yaml").read_text())
    layers = [s["params"]["cutoff_layer"] for s in raw["strategies"] if isinstance(s, dict) and s["name"] == "cutoff"]
    assert KERAS_DENSENET121_ALIASES["conv5_block16_2_conv"] == "features.denseblock4.denselayer16.conv2"
    model = build_classifier("densenet121", 1)
    trained = []
    for layer in layers:
        name = KERAS_DENSENET121_ALIASES.get(layer, layer)
        assert isinstance(model.get_submodule(name), torch.nn.Conv2d), layer
        trained.append(len(split_at_layer(model, name)[1]))
    assert trained == sorted(trained) and len(set(trained)) == len(layers)  # each deeper cut trains less


def test_task_modality_defaults_to_its_name_and_selects_cells(tmp_path: Path) -> None:
    raw = {"tasks": [{"name": "site_a", "bundle": "chest_xray_classification", "data": {"embedded": "chestxray14"}},
                     {"name": "site_b", "modality": "xray", "bundle": "chest_xray_classification",
                      "data": {"embedded": "chestxray14"}}],
           "architectures": ["resnet18"], "stage1": ["none"], "strategies": ["ft", "lp"], "seeds": [0],
           "exclude": [{"modality": "xray", "strategy": "lp"}]}
    cells = expand(parse_grid(raw, tmp_path))
    assert [(c.describe()["bundle"], c.describe()["modality"], c.strategy.name) for c in cells] == [
        ("site_a", "site_a", "ft"), ("site_a", "site_a", "lp"), ("site_b", "xray", "ft")]


def test_task_overrides_are_checked_against_the_bundle(tmp_path: Path) -> None:
    raw = {"tasks": [{"bundle": "chest_xray_classification", "data": {"embedded": "chestxray14"},
                      "overrides": {"colour": "rgb"}}], "architectures": ["resnet18"], "stage1": ["none"]}
    with pytest.raises(ConfigError, match="overrides of tasks\\[0\\].*no config id 'colour'"):
        parse_grid(raw, tmp_path)
