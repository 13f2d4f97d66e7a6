"""Discriminative (layer-wise) learning rates (ULMFiT, Howard & Ruder 2018)."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from common.errors import ConfigError
from common.finetune.base import FinetuneStrategy, log_param_groups, unwrap

__all__ = ["DiscriminativeLR"]


class DiscriminativeLR(FinetuneStrategy):
    """Discriminative fine-tuning: Howard & Ruder, ACL 2018 (section 3.2).

    Variant implemented: every layer group trains; group ``k`` counted from the top (head ``k=0``, the
    group below it ``k=1`` ... the stem last) gets ``lr = base_lr * decay**k``. ULMFiT's ``decay = 1/2.6``.

    Args:
        decay: per-group multiplier in (0, 1].
    """

    def __init__(self, decay: float = 1 / 2.6) -> None:
        if not 0 < float(decay) <= 1:
            raise ConfigError(f"DiscriminativeLR decay must be in (0, 1], got {decay}")
        self.decay = float(decay)

    def param_groups(self, model: nn.Module, base_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        groups = self.groups(model)
        self.set_trainable(model, groups, True)
        depth = len(groups) - 1
        out = [self.make_group(model, g, base_lr * self.decay ** (depth - i), weight_decay)
               for i, g in enumerate(groups)]
        log_param_groups(out, unwrap(model))
        return out
