"""Experiment runner: grids of bundle x architecture x weight source x strategy x seed, and their leaderboard."""

from __future__ import annotations

# write_leaderboard is not re-exported: it pulls in matplotlib and sklearn, and the runner imports it lazily.
from common.experiments.progress import CellProgress
from common.experiments.stats import ConfigSummary, PairedComparison, Run, summarise

__all__ = ["CellProgress", "ConfigSummary", "PairedComparison", "Run", "summarise"]
