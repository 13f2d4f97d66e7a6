"""A grid's runs as jobs: every cell and stage-2 run with its settings, fingerprint and folder in the run folder.

Planning writes nothing and imports no training code, so ``--dry-run`` and the resume check use it too.

Example:
    >>> plan = plan_grid(load_grid("configs/grids/demo.yaml"), Path("experiments/demo"))  # doctest: +SKIP
    >>> plan.cells[0][1].name  # doctest: +SKIP
    'cells/chest_xray_classification__resnet18__none__none__ft__seed0'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.experiments.cells import Cell, PretrainCell, expand, pretrain_cells
from common.experiments.data import data_location, site_locations
from common.experiments.jobs import RunJob
from common.experiments.specs import Grid
from common.networks.checkpoint_card import fingerprint  # one settings hash for cells and checkpoints

__all__ = ["GridPlan", "plan_grid"]

#: Settings that change how fast a cell runs, not what it computes: left out of its fingerprint.
_NOT_FINGERPRINTED = ("num_workers",)


@dataclass(frozen=True)
class GridPlan:
    """Every run of a grid, in run order.

    Attributes:
        cells: each cell with its job (``cells/<id>``).
        stage2: the stage-2 runs (``pretrain/<id>``) by :class:`~common.experiments.cells.PretrainCell` id.
    """

    cells: list[tuple[Cell, RunJob]]
    stage2: dict[str, RunJob]

    def jobs(self) -> list[RunJob]:
        """All jobs: cells, then stage-2 runs."""
        return [job for _, job in self.cells] + list(self.stage2.values())


def _fingerprint(settings: dict[str, Any], out: Path, stage2: str | None = None) -> str:
    """The fingerprint of a run's settings, with paths inside the run folder made relative (so the folder can
    move) and, for a cell starting from the grid's stage-2 run, that run's own fingerprint (so a changed
    stage 2 is a changed cell)."""
    root = str(out)
    portable = {k: (v.replace(root, "<run>") if isinstance(v, str) else v)
                for k, v in settings.items() if k not in _NOT_FINGERPRINTED}
    return fingerprint({**portable, "stage2_run": stage2} if stage2 is not None else portable)


def _pretrained_for(cell: Cell, out: Path) -> str:
    if cell.pretrain is not None:
        return "bundle:" + str(out / "pretrain" / cell.pretrain.id)
    return cell.stage2 if cell.stage2.startswith("bundle:") else cell.stage1


def _stage2_job(pcell: PretrainCell, grid: Grid, out: Path, extra: dict[str, Any],
                tracking: tuple[str, str] | None) -> RunJob:  # fmt: skip
    if grid.pretraining is None:  # parse_grid refuses stage2: medical without it
        raise ValueError("stage2: medical needs the grid's pretraining section")
    dataset_dir, datalist = data_location(grid.pretraining.data, out / "data")
    settings = {**grid.pretraining.overrides, "arch": pcell.arch, "pretrained": pcell.stage1, "seed": 0,
                "dataset_dir": str(dataset_dir), "datalist": str(datalist), **extra}
    return RunJob(f"pretrain/{pcell.id}", str(grid.pretraining.bundle.path), grid.pretraining.bundle.metric,
                  str(out / "pretrain" / pcell.id), None, settings, _fingerprint(settings, out), False, tracking)


def plan_grid(grid: Grid, out: Path, num_workers: int | None = None) -> GridPlan:
    """Every cell and stage-2 run of ``grid`` as a job in the run folder ``out`` (absolute).

    Args:
        grid: a validated grid.
        out: the run folder.
        num_workers: DataLoader workers for every run (not part of a run's fingerprint).
    """
    extra = {} if num_workers is None else {"num_workers": int(num_workers)}
    tracking = (str(out / "mlruns"), grid.name) if grid.tracking == "mlflow" else None
    cells = expand(grid)
    stage2 = {p.id: _stage2_job(p, grid, out, extra, tracking) for p in pretrain_cells(cells)}
    planned = []
    for cell in cells:
        settings = {**grid.overrides, **cell.task.overrides, **cell.strategy.params_for(cell.arch),
                    "arch": cell.arch, "pretrained": _pretrained_for(cell, out), "seed": cell.seed}
        stage2_fp = stage2[cell.pretrain.id].fingerprint if cell.pretrain is not None else None
        if cell.task.sites:
            federation = _federation(cell, grid, out)
            fingerprinted = {**settings, "training": cell.training, "rounds": federation["rounds"],
                             "local_epochs": federation["local_epochs"],
                             **{f"site {s}": loc[1] for s, loc in federation["sites"].items()}}
            settings.update(extra)
            job = RunJob(f"cells/{cell.id}", str(cell.task.bundle.path), cell.task.bundle.metric,
                         str(out / "cells" / cell.id), str(cell.strategy.overlay), settings,
                         _fingerprint(fingerprinted, out, stage2_fp), True, tracking, federation)
        else:
            dataset_dir, datalist = data_location(cell.task.data, out / "data")
            settings.update({"dataset_dir": str(dataset_dir), "datalist": str(datalist), **extra})
            job = RunJob(f"cells/{cell.id}", str(cell.task.bundle.path), cell.task.bundle.metric,
                         str(out / "cells" / cell.id), str(cell.strategy.overlay), settings,
                         _fingerprint(settings, out, stage2_fp), True, tracking)
        planned.append((cell, job))
    return GridPlan(planned, stage2)


def _federation(cell: Cell, grid: Grid, out: Path) -> dict[str, Any]:
    """What a cell of a task with sites runs (see :class:`~common.experiments.jobs.RunJob`'s ``federation``)."""
    if grid.federated is None:  # parse_grid refuses sites without the federated block
        raise ValueError("a task with sites needs the grid's federated block")
    locations = site_locations(cell.task.data, out / "data", cell.task.sites)
    return {"training": cell.training, "rounds": grid.federated.rounds, "local_epochs": grid.federated.local_epochs,
            "sites": {site: [str(folder), str(datalist)] for site, (folder, datalist) in locations.items()}}
