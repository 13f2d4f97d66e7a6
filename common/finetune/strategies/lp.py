"""LP: linear probing, only the head trains; the backbone and its BatchNorm statistics stay frozen."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from common.finetune.base import FinetuneStrategy, log_param_groups, unwrap

__all__ = ["LP"]


class LP(FinetuneStrategy):
    """Linear probing (e.g. Kornblith et al. 2019; Kumar et al. 2022): train the head only.

    The backbone is frozen (``requires_grad=False``, BatchNorm running statistics held, dropouts off) and left
    out of the optimizer; only the ``head`` layer group is optimised at ``base_lr``. Given ``transfer_report``
    (``"@pretrained_report"``), groups that received no pretrained weight (a segmenter's random decoder) train
    with the head: freezing random weights is not probing (:meth:`FinetuneStrategy.new_groups`).

    Args:
        transfer_report: the bundle's ``pretrained`` load report.
    """

    def __init__(self, transfer_report: Any = None) -> None:
        self.transfer_report = transfer_report

    def param_groups(self, model: nn.Module, base_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        backbone, trained = self.split_groups(model)
        self.set_trainable(model, backbone, False)
        self.set_trainable(model, trained, True)
        groups = [self.make_group(model, g, base_lr, weight_decay) for g in trained]
        log_param_groups(groups, unwrap(model))
        return groups
