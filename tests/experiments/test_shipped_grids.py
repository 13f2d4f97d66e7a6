"""The grids in configs/grids/ parse, expand to the studies' designs and name layers that exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from common.experiments.__main__ import GRIDS_DIR
from common.experiments.cells import expand, pretrain_cells
from common.experiments.grid import parse_grid
from common.networks import build_classifier, imagenet_weights_file

GRIDS = sorted(GRIDS_DIR.glob("*.yaml"))
#: Cells per grid: the studies' designs (a: 2 stage-1 x 2 stage-2 x 2 tasks; b: 3 models x 5 runs; c: ...).
#: d: 8 strategies x 3 architectures x 5 modalities x 5 seeds; e: 2 augmentation settings x (FT, LP, 4 cut-offs) x 5;
#: f: (FT, LP) x (each of 2 sites alone, pooled, federated) x 2 seeds.
EXPECTED_CELLS = {"a_two_stage": 8 * 3, "a_two_stage_embedded": 8 * 2, "b_models": 3 * 5, "b_models_embedded": 3 * 5,
                  "c_strategies": 13 * 3 * 5, "c_strategies_embedded": 8 * 2, "demo": 3 * 2 * 2,
                  "d_modalities": 8 * 3 * 5 * 5, "e_cutoff_binary": 2 * 6 * 5, "e_cutoff_binary_embedded": 2 * 5 * 2,
                  "d_modalities_embedded": 5 * 8 * 2,
                  "f_federated_embedded": 2 * 4 * 2}


def _with_local_data(raw: Any, root: Path) -> Any:
    """Point every real dataset_dir (and datalist) at an empty prepared folder under ``root`` (not read here)."""
    if isinstance(raw, dict):
        if "dataset_dir" in raw:
            folder = root / Path(str(raw["dataset_dir"])).name
            folder.mkdir(parents=True, exist_ok=True)
            datalist = folder / Path(str(raw.get("datalist", "datalist.json"))).name
            datalist.write_text('{"training": [], "validation": []}')
            return {**raw, "dataset_dir": str(folder), **({"datalist": str(datalist)} if "datalist" in raw else {})}
        return {k: _with_local_data(v, root) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_with_local_data(v, root) for v in raw]
    return raw


@pytest.fixture()
def hub_with_imagenet_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A torch hub cache holding (placeholder) torchvision ImageNet files, as a prepared GPU machine has."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    for arch in ("densenet121", "resnet18", "resnet50", "vgg19"):
        file = imagenet_weights_file(arch)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(b"")


def test_all_studies_ship() -> None:
    assert {g.stem for g in GRIDS} == set(EXPECTED_CELLS)


@pytest.mark.parametrize("grid_file", GRIDS, ids=[g.stem for g in GRIDS])
def test_grid_parses_and_expands_to_the_design(grid_file: Path, tmp_path: Path, hub_with_imagenet_files: None) -> None:
    raw = _with_local_data(yaml.safe_load(grid_file.read_text()), tmp_path / "data")
    grid = parse_grid(raw, grid_file.parent, source=grid_file)
    cells = expand(grid)
    assert grid.name == grid_file.stem and len(cells) == EXPECTED_CELLS[grid.name]
    if "medical" in grid.stage2:
        assert pretrain_cells(cells), "stage2: medical must add a stage-2 run"


def test_a_is_the_eight_experiment_table(tmp_path: Path, hub_with_imagenet_files: None) -> None:
    file = GRIDS_DIR / "a_two_stage.yaml"
    cells = expand(parse_grid(_with_local_data(yaml.safe_load(file.read_text()), tmp_path), file.parent))
    table = {(c.task.bundle.kind, c.stage1, c.stage2) for c in cells}
    assert len(table) == 8
    assert {(p.arch, p.stage1) for p in pretrain_cells(cells)} == {("resnet50", "imagenet"), ("resnet50", "none")}


def test_cutoff_layers_of_study_c_exist() -> None:
    raw = yaml.safe_load((GRIDS_DIR / "c_strategies.yaml").read_text())
    cutoff = next(s for s in raw["strategies"] if isinstance(s, dict) and s["name"] == "cutoff")
    for arch, params in cutoff["arch_params"].items():
        layer = build_classifier(arch, 14).get_submodule(params["cutoff_layer"])
        assert isinstance(layer, torch.nn.Conv2d), (arch, params)
