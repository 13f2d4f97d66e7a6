"""DataLoaders sized to the machine: worker count from the CPUs this process may use, persistent workers,
deeper prefetch, and pinned memory when the batches go to a CUDA device.

Bundles build their loaders with :func:`make_dataloader` (``"_target_": "common.data.loader.make_dataloader"``),
so ``num_workers`` may be ``"auto"`` (the default in every bundle) or an explicit integer (``--num_workers 0``
loads in the main process, as the tests do).

Example:
    >>> resolve_num_workers(3)
    3
    >>> resolve_num_workers("auto") >= 0
    True
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from monai.data import DataLoader
from torch.utils.data import Dataset

from common.errors import ConfigError

__all__ = ["MAX_AUTO_WORKERS", "available_cpus", "make_dataloader", "resolve_num_workers"]

logger = logging.getLogger(__name__)

#: Upper bound of ``num_workers="auto"`` per process: beyond it extra workers mostly add memory and start-up time.
MAX_AUTO_WORKERS = 16


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else ``os.cpu_count()``)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolve_num_workers(num_workers: int | str) -> int:
    """``num_workers`` as an integer: ``"auto"`` is the CPUs available to each process of this node, minus one for the
    process that trains, capped at :data:`MAX_AUTO_WORKERS`.

    Under ``torchrun`` the CPUs are shared by ``LOCAL_WORLD_SIZE`` processes, each with its own loader.

    Raises:
        ConfigError: ``num_workers`` is neither ``"auto"`` nor an integer >= 0.
    """
    if num_workers == "auto":
        per_process = available_cpus() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        return max(0, min(MAX_AUTO_WORKERS, per_process - 1))
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ConfigError(f"setting num_workers={num_workers!r} is not valid: expected 'auto' or an integer >= 0")
    return num_workers


def make_dataloader(dataset: Dataset, batch_size: int, shuffle: bool = False, num_workers: int | str = "auto",
                    device: torch.device | str = "cpu", prefetch_factor: int = 4, **kwargs: Any) -> DataLoader:
    """A MONAI ``DataLoader`` with machine-fitted defaults.

    Args:
        dataset: the dataset to load.
        batch_size: images per batch.
        shuffle: reshuffle every epoch (``False`` with a ``sampler``).
        num_workers: ``"auto"`` or an integer, see :func:`resolve_num_workers`.
        device: where the batches go; a CUDA device turns on ``pin_memory`` (page-locked batches copy asynchronously,
            see :class:`common.engines.batch.PlainTensorBatch`).
        prefetch_factor: batches each worker keeps ready (only with workers).
        kwargs: any other ``DataLoader`` argument (``sampler``, ``collate_fn``, ``pin_memory`` to override ...).

    Returns:
        The loader; workers persist across epochs (and validation rounds) when there are any.
    """
    workers = resolve_num_workers(num_workers)
    options: dict[str, Any] = {"pin_memory": torch.device(device).type == "cuda"}
    if workers > 0:
        options.update(persistent_workers=True, prefetch_factor=prefetch_factor)
    options.update(kwargs)
    logger.debug("DataLoader: %d worker(s), batch %d, %s", workers, batch_size, options)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, **options)
