"""The model inside a data-parallel wrapper: one definition for the whole library."""

from __future__ import annotations

import torch.nn as nn

__all__ = ["unwrap"]


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside ``DistributedDataParallel`` / ``DataParallel``, or ``model`` itself."""
    if isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
        return model.module
    return model
