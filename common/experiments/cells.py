"""Expand a grid into cells: one bundle run (train + evaluate) per combination, and the stage-2 runs they need."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import ConfigError
from common.experiments.specs import Grid, StrategySpec, TaskSpec

__all__ = ["Cell", "PretrainCell", "expand", "pretrain_cells", "training_modes"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


def _safe(text: str) -> str:
    return _UNSAFE.sub("-", text.replace(")", "")).strip("-")


@dataclass(frozen=True)
class PretrainCell:
    """One stage-2 run: the grid's pretraining bundle for one backbone and one stage-1 source."""

    arch: str
    stage1: str

    @property
    def id(self) -> str:
        """Folder name under ``pretrain/``."""
        return _safe(f"{self.arch}__{self.stage1}")


@dataclass(frozen=True)
class Cell:
    """One task run of the grid (see :func:`expand`).

    ``training`` is ``local`` for a task on one dataset; for a task with sites ``pooled``, ``federated`` or
    ``local-<site>`` (one site alone).
    """

    task: TaskSpec
    arch: str
    stage1: str
    stage2: str
    strategy: StrategySpec
    seed: int
    training: str = "local"

    @property
    def stage2_label(self) -> str:
        """``none``, ``medical`` or the folder name of a given stage-2 bundle."""
        return Path(self.stage2.removeprefix("bundle:")).name if self.stage2.startswith("bundle:") else self.stage2

    @property
    def id(self) -> str:
        """Folder name under ``cells/``; unique within a grid (a ``local`` cell's has no training part, as before
        the training axis existed)."""
        mode = "" if self.training == "local" else f"{self.training}__"
        return _safe(f"{self.task.name}__{self.arch}__{self.stage1}__{self.stage2_label}__"
                     f"{self.strategy.label}__{mode}seed{self.seed}")

    @property
    def site(self) -> str | None:
        """The site a ``local-<site>`` cell trains on alone, else ``None``."""
        return self.training.removeprefix("local-") if self.training.startswith("local-") else None

    @property
    def pretrain(self) -> PretrainCell | None:
        """The stage-2 run this cell starts from (``stage2: medical``), else ``None``."""
        if self.stage2 != "medical":
            return None
        return PretrainCell(self.task.bundle.backbone(self.arch) or self.arch, self.stage1)

    def describe(self) -> dict[str, Any]:
        """The configuration columns of ``results.csv``."""
        return {"cell": self.id, "bundle": self.task.name, "modality": self.task.modality or self.task.name,
                "arch": self.arch, "stage1": self.stage1, "stage2": self.stage2_label,
                "strategy": self.strategy.label, "seed": self.seed, "training": self.training}


def _excluded(cell: Cell, rules: tuple[dict[str, str], ...]) -> bool:
    """Whether any ``exclude`` rule matches ``cell`` (a rule matches when all its keys match; strategy by name)."""
    values = {**{k: str(v) for k, v in cell.describe().items()}, "strategy": cell.strategy.name,
              "stage2": cell.stage2}
    return any(all(values.get(k) == v for k, v in rule.items()) for rule in rules)


def training_modes(grid: Grid, task: TaskSpec) -> list[str]:
    """The training column of ``task``'s cells: ``local`` on one dataset; with sites ``local`` becomes one
    ``local-<site>`` per site, and ``pooled`` / ``federated`` are kept (a task on one dataset has no such cells).

    Example:
        >>> training_modes(grid, chest_with_two_sites)  # doctest: +SKIP
        ['local-site-1', 'local-site-2', 'pooled', 'federated']
    """
    if not task.sites:
        return ["local"] if "local" in grid.training else []
    modes: list[str] = []
    for mode in grid.training:
        modes += [f"local-{site}" for site in task.sites] if mode == "local" else [mode]
    return modes


def expand(grid: Grid) -> list[Cell]:
    """All cells of ``grid`` in run order: task, architecture, stage 1, stage 2, strategy, training, seed.

    A ``stage2: bundle:<path>`` source already contains its stage 1, so its cells are recorded with
    ``stage1 = "n/a"`` once instead of once per stage-1 value. Cells matching an ``exclude`` rule are left out.
    Training modes come from :func:`training_modes`.

    Raises:
        ConfigError: two cells would share a folder (e.g. two stage-2 bundles in folders of the same name).
    """
    cells: list[Cell] = []
    seen: dict[str, Cell] = {}
    for task in grid.tasks:
        for arch in task.architectures:
            for stage1 in grid.stage1:
                for stage2 in grid.stage2:
                    if stage2.startswith("bundle:") and stage1 != grid.stage1[0]:
                        continue  # a trained stage-2 bundle already holds its stage 1: one cell, not one per stage1
                    s1 = "n/a" if stage2.startswith("bundle:") else stage1
                    for strategy, mode, seed in itertools.product(grid.strategies, training_modes(grid, task),
                                                                  grid.seeds):
                        cell = Cell(task, arch, s1, stage2, strategy, seed, mode)
                        if _excluded(cell, grid.exclude):
                            continue
                        if cell.id in seen:
                            raise ConfigError(f"two cells of the grid get the same folder name {cell.id!r} "
                                              f"(stage-2 bundles {seen[cell.id].stage2} and {cell.stage2}?); "
                                              f"give them distinct folder names")
                        seen[cell.id] = cell
                        cells.append(cell)
    return cells


def pretrain_cells(cells: list[Cell]) -> list[PretrainCell]:
    """The distinct stage-2 runs ``cells`` need, in first-use order."""
    needed: list[PretrainCell] = []
    for cell in cells:
        if cell.pretrain is not None and cell.pretrain not in needed:
            needed.append(cell.pretrain)
    return needed
