"""Experiment runner: grids of bundle x architecture x weight source x strategy x seed, and their leaderboard."""

from __future__ import annotations

# write_leaderboard is not re-exported: it pulls in matplotlib and sklearn, and the runner imports it lazily.
from common.experiments.cells import Cell, expand
from common.experiments.grid import Grid, load_grid, parse_grid
from common.experiments.progress import CellProgress
from common.experiments.runner import GridRun, read_results, run_grid
from common.experiments.stats import ConfigSummary, PairedComparison, Run, summarise

__all__ = ["Cell", "CellProgress", "ConfigSummary", "Grid", "GridRun", "PairedComparison", "Run", "expand",
           "load_grid", "parse_grid", "read_results", "run_grid", "summarise"]
