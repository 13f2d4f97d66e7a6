"""MaskedBCEWithLogitsLoss ignores NaN labels exactly."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from common.losses import MaskedBCEWithLogitsLoss


def test_nan_targets_are_left_out_of_the_mean() -> None:
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.5]])
    target = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    known = F.binary_cross_entropy_with_logits(logits[[0, 1, 1], [0, 0, 1]], target[[0, 1, 1], [0, 0, 1]])
    assert torch.allclose(MaskedBCEWithLogitsLoss()(logits, target), known)


def test_all_unknown_gives_zero_with_gradient() -> None:
    logits = torch.zeros(2, 3, requires_grad=True)
    loss = MaskedBCEWithLogitsLoss()(logits, torch.full((2, 3), float("nan")))
    loss.backward()
    assert float(loss) == 0.0 and not math.isnan(float(logits.grad.sum()))
