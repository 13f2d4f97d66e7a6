"""Experiment runner: grids of bundle x architecture x weight source x strategy x seed, and their leaderboard.

The names below are imported on first use (PEP 562), not with the package: a grid cell's worker process
(``python -m common.experiments.worker``) imports only what its cell needs, so a cell whose bundle fails at once
costs no seconds of importing the runner. ``write_leaderboard`` is not re-exported: it pulls in matplotlib and
sklearn.

Example:
    >>> from common.experiments import load_grid, run_grid  # doctest: +SKIP
    >>> run_grid(load_grid("configs/grids/demo.yaml"), "experiments/demo", executor="local")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from common.experiments.cells import Cell, expand
    from common.experiments.grid import load_grid, parse_grid
    from common.experiments.progress import CellProgress
    from common.experiments.runner import GridRun, read_results, run_grid
    from common.experiments.specs import Grid
    from common.experiments.stats import ConfigSummary, PairedComparison, Run, summarise

__all__ = ["Cell", "CellProgress", "ConfigSummary", "Grid", "GridRun", "PairedComparison", "Run", "expand",
           "load_grid", "parse_grid", "read_results", "run_grid", "summarise"]

_HOMES = {"Cell": "cells", "expand": "cells", "Grid": "specs", "load_grid": "grid", "parse_grid": "grid",
          "CellProgress": "progress", "GridRun": "runner", "read_results": "runner", "run_grid": "runner",
          "ConfigSummary": "stats", "PairedComparison": "stats", "Run": "stats", "summarise": "stats"}


def __getattr__(name: str) -> Any:
    """Import ``name`` from its module on first use."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value
