"""CPU thread shares for processes that run side by side (grid cells, simulated federated sites).

Each torch process otherwise starts one intra-op thread per core, so N processes at once oversubscribe the CPU
N-fold: two simulated sites on 2 cores trained ~6x slower than with one thread each (measured here).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["thread_share"]


def thread_share(parallel: int, environ: Mapping[str, str]) -> dict[str, str]:
    """``OMP_NUM_THREADS`` for each of ``parallel`` processes running at once: its share of this process's cores.

    Nothing is set for one process at a time or when the user has set ``OMP_NUM_THREADS`` already (``environ``).

    Example:
        >>> thread_share(2, {"OMP_NUM_THREADS": "3"})
        {}
    """
    if parallel <= 1 or "OMP_NUM_THREADS" in environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, len(os.sched_getaffinity(0)) // parallel))}
