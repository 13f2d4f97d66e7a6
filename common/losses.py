"""Losses for multi-label classification with unknown labels."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["MaskedBCEWithLogitsLoss"]


class MaskedBCEWithLogitsLoss(nn.Module):
    """Binary cross-entropy on logits that ignores NaN (unknown) targets, as in torchxrayvision.

    The loss is the mean over known (image, finding) pairs; a batch with no known label gives 0 with a
    gradient path, so training never divides by zero.

    Args:
        pos_weight: optional per-class weight of positives (list of floats, JSON friendly).

    Example:
        >>> loss = MaskedBCEWithLogitsLoss()
        >>> float(loss(torch.zeros(1, 2), torch.tensor([[1.0, float("nan")]])))  # doctest: +ELLIPSIS
        0.693...
    """

    def __init__(self, pos_weight: list[float] | None = None) -> None:
        super().__init__()
        self.register_buffer("pos_weight", None if pos_weight is None else torch.as_tensor(pos_weight).float())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the mean BCE over entries whose target is not NaN."""
        target = target.to(logits.dtype)
        known = ~torch.isnan(target)
        if not bool(known.any()):
            return logits.sum() * 0.0
        losses = F.binary_cross_entropy_with_logits(
            logits, torch.nan_to_num(target), pos_weight=self.pos_weight, reduction="none"
        )
        return losses[known].mean()
