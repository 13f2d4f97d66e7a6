"""LP: linear probing, only the head trains; the backbone and its BatchNorm statistics stay frozen."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from common.finetune.base import FinetuneStrategy, log_param_groups, unwrap

__all__ = ["LP"]


class LP(FinetuneStrategy):
    """Linear probing (e.g. Kornblith et al. 2019; Kumar et al. 2022): train the head only.

    The backbone is frozen (``requires_grad=False``, BatchNorm running statistics held) and left out of
    the optimizer; only the ``head`` layer group is optimised at ``base_lr``.
    """

    def param_groups(self, model: nn.Module, base_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        *backbone, head = self.groups(model)
        self.set_trainable(model, backbone, False)
        self.set_trainable(model, [head], True)
        groups = [self.make_group(model, head, base_lr, weight_decay)]
        log_param_groups(groups, unwrap(model))
        return groups
