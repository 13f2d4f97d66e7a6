"""The embedded study grids (d) and (e) run end to end through the runner, cut down to a few cells (1 epoch, 1 seed).

The full embedded grids (80 and 20 cells, 16 and 4 minutes on 2 shared cores with one torch thread) are run
by hand:
``python -m common.experiments run configs/grids/d_modalities_embedded.yaml``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from common.experiments.__main__ import GRIDS_DIR
from common.experiments.grid import parse_grid
from common.experiments.runner import run_grid

#: Generator settings of the cut-downs: about half the grids' images (every split keeps every class).
SMALLER = {"n_patients": 0.5, "n_train": 0.4, "n_val": 0.5, "n_test": 0.5}


def _cut_down(name: str, strategies: list[Any], smaller: bool = True) -> dict[str, Any]:
    """The grid with every task (each layout, grey and colour) but ``strategies``, one seed, one epoch, (``smaller``)
    less data."""
    raw = yaml.safe_load((GRIDS_DIR / f"{name}.yaml").read_text())
    raw["strategies"] = strategies
    raw["seeds"] = [0]
    raw["overrides"] = {**raw["overrides"], "epochs": 1, "n_boot": 20}
    for task in raw["tasks"] if smaller else []:
        generate = task["data"]["generate"]
        generate.update({k: int(v * SMALLER[k]) for k, v in generate.items() if k in SMALLER})
    return raw


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Train on one thread: on a shared 2-core machine two threads per process oversubscribe the cores (several
    times slower per step); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _results(out: Path) -> list[dict[str, str]]:
    with (out / "results.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_d_modalities_embedded_runs_every_modality(tmp_path: Path) -> None:
    raw = _cut_down("d_modalities_embedded", ["ft", "lp"])
    raw["exclude"] = [{"modality": "mri", "strategy": "lp"}]  # 9 cells: an exclude rule by modality too
    done = run_grid(parse_grid(raw, GRIDS_DIR), tmp_path / "run", num_workers=0, executor="inprocess")
    assert done.failed == [] and done.ran == 5 + 4
    rows = _results(tmp_path / "run")
    assert {r["modality"] for r in rows} == {"xray", "mri", "histology", "dermoscopy", "endoscopy"}
    assert {r["metric"] for r in rows} == {"macro_auc"} and all(0.0 <= float(r["value"]) <= 1.0 for r in rows)
    board = (tmp_path / "run" / "leaderboard.md").read_text()
    assert "## Strategies vs ft across cases" in board and "| lp | 4 | 0 | 0 | 0 | n/a |" in board  # 1 seed
    cases = list(csv.DictReader((tmp_path / "run" / "strategy_cases.csv").open(newline="")))
    assert sorted(r["modality"] for r in cases) == ["dermoscopy", "endoscopy", "histology", "xray"]


def test_e_cutoff_binary_embedded_runs_lp_and_a_cutoff_with_and_without_augmentation(tmp_path: Path) -> None:
    cutoff = {"name": "cutoff", "params": {"cutoff_layer": "_conv_head"}}
    raw = _cut_down("e_cutoff_binary_embedded", ["lp", cutoff], smaller=False)  # few Effusion images already
    done = run_grid(parse_grid(raw, GRIDS_DIR), tmp_path / "run", num_workers=0, executor="inprocess")
    assert done.failed == [] and done.ran == 2 * 2
    rows = _results(tmp_path / "run")
    assert {(r["bundle"], r["strategy"]) for r in rows} == {
        (task, strategy) for task in ("effusion_augmented", "effusion_no_augmentation")
        for strategy in ("lp", "cutoff(cutoff_layer=_conv_head)")}
    assert {r["metric"] for r in rows} == {"macro_auc"}
    board = (tmp_path / "run" / "leaderboard.md").read_text()
    assert "## Strategies vs lp across cases" in board
    shares = list(csv.DictReader((tmp_path / "run" / "strategy_shares.csv").open(newline="")))
    assert [(r["strategy"], r["baseline"], r["cases"]) for r in shares] == [("cutoff(cutoff_layer=_conv_head)", "lp",
                                                                             "2")]
