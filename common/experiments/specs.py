"""The parsed grid's parts as plain frozen dataclasses, shared by the parser, the checks, the data and the cells.

They live apart from :mod:`common.experiments.grid` (the parser) so that the modules which read a parsed grid
(:mod:`~common.experiments.checks`, :mod:`~common.experiments.data`, :mod:`~common.experiments.cells`) import
these types and not the parser, and the parser imports them: the module graph has no circle.

Example:
    >>> StrategySpec("lp_ft", {"lp_epochs": 2}).label
    'lp_ft(lp_epochs=2)'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.experiments.bundles import FINETUNE_DIR, BundleInfo

__all__ = ["TRAINING_MODES", "DataSpec", "FederatedSpec", "Grid", "PretrainSpec", "StrategySpec", "TaskSpec"]

#: The grid's ``training`` axis: one dataset (``local``), all sites' data pooled, or a federation of the sites.
TRAINING_MODES = ("local", "pooled", "federated")


@dataclass(frozen=True)
class StrategySpec:
    """A fine-tuning strategy: an overlay ``configs/finetune/<name>.json`` and values for its keys.

    ``arch_params`` holds values that depend on the architecture (e.g. the ``cutoff_layer`` of ``cutoff``):
    ``{arch: {key: value}}``, applied after ``params`` for cells of that architecture.
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    arch_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def params_for(self, arch: str) -> dict[str, Any]:
        """The overlay values of a cell with architecture ``arch``."""
        return {**self.params, **self.arch_params.get(arch, {})}

    @property
    def overlay(self) -> Path:
        """The overlay config file merged after ``train.json``."""
        return FINETUNE_DIR / f"{self.name}.json"

    @property
    def label(self) -> str:
        """Name plus parameters, e.g. ``lp_ft(lp_epochs=2)``: distinct settings are distinct rows."""
        if not self.params:
            return self.name
        return f"{self.name}(" + ",".join(f"{k}={self.params[k]}" for k in sorted(self.params)) + ")"


@dataclass(frozen=True)
class DataSpec:
    """Where a task's data is: a prepared folder + datalist, or an embedded synthetic dataset to generate.

    Attributes:
        dataset_dir: dataset root (``None`` for embedded data, placed under the run's ``data/`` folder).
        datalist: datalist JSON (default ``<dataset_dir>/datalist.json``).
        embedded: embedded layout name (``chestxray14``, ``cbis-ddsm``, ``bcss``, ``general_medical``, or
            ``sites``: the synthetic hospitals of :mod:`common.synthetic.sites`).
        generate: generator keyword arguments (embedded only).
        split: adapter keyword arguments (embedded only).
        sites: a federation's sites given one by one: site name -> that site's data (then nothing else is set).
    """

    dataset_dir: Path | None = None
    datalist: Path | None = None
    embedded: str | None = None
    generate: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    sites: dict[str, DataSpec] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    """One task bundle of the grid with its data, architectures and overrides.

    ``name`` (default: the bundle's folder name) is the ``bundle`` column of results; two tasks on the same
    bundle (e.g. with different data) need distinct names. ``modality`` (default: ``name``) is the ``modality``
    column: the label the strategy-vs-baseline table groups cases by (``xray``, ``mri``, ``histology`` ...).
    ``sites`` names the sites of a task whose data is a federation (``data: {sites: ...}`` or ``embedded: sites``);
    empty for a task on one dataset.
    """

    bundle: BundleInfo
    data: DataSpec
    architectures: tuple[str, ...]
    overrides: dict[str, Any]
    metric: str
    name: str = ""
    modality: str = ""
    sites: tuple[str, ...] = ()


@dataclass(frozen=True)
class FederatedSpec:
    """The grid's ``federated`` block: how the cells of a task with sites train (every training mode of them).

    A federated cell runs ``rounds`` FedAvg rounds of ``local_epochs`` epochs at every site; a pooled or
    ``local-<site>`` cell trains for the same ``rounds * local_epochs`` epochs, so the modes see equal epochs.
    """

    rounds: int = 2
    local_epochs: int = 1


@dataclass(frozen=True)
class PretrainSpec:
    """The grid's stage-2 run (``stage2: medical``): a pretraining bundle, its data and overrides."""

    bundle: BundleInfo
    data: DataSpec
    overrides: dict[str, Any]


@dataclass(frozen=True)
class Grid:
    """A parsed, validated grid (see module docstring)."""

    name: str
    tasks: tuple[TaskSpec, ...]
    stage1: tuple[str, ...]
    stage2: tuple[str, ...]
    strategies: tuple[StrategySpec, ...]
    seeds: tuple[int, ...]
    overrides: dict[str, Any]
    baseline: str = "ft"
    tracking: str = "none"
    pretraining: PretrainSpec | None = None
    source: Path | None = None
    exclude: tuple[dict[str, str], ...] = ()
    training: tuple[str, ...] = ("local",)
    federated: FederatedSpec | None = None
