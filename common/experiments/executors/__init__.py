"""Where a grid's cells run: in this process, in local subprocesses, or as a Slurm job array (submitit).

Example:
    >>> make_executor("local", parallel=2, gpus=[]).parallel
    2
"""

from __future__ import annotations

from typing import Any

from common.errors import ConfigError
from common.experiments.executors.base import Executor, InProcessExecutor, Outcome
from common.experiments.executors.local import LocalExecutor

__all__ = ["EXECUTORS", "Executor", "InProcessExecutor", "LocalExecutor", "Outcome", "make_executor"]

#: Executor names, as ``--executor`` takes them.
EXECUTORS = ("inprocess", "local", "slurm")


def make_executor(name: str, **options: Any) -> Executor:
    """The executor called ``name``, built with ``options`` (its constructor's arguments).

    Raises:
        ConfigError: an unknown name.
    """
    if name == "inprocess":
        return InProcessExecutor(**options)
    if name == "local":
        return LocalExecutor(**options)
    if name == "slurm":
        from common.experiments.executors.slurm import SlurmExecutor  # submitit: imported only where used

        return SlurmExecutor(**options)
    raise ConfigError(f"unknown executor {name!r}; choose from: {', '.join(EXECUTORS)}")
