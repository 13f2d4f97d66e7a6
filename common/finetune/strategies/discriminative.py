"""Discriminative (layer-wise) learning rates (ULMFiT, Howard & Ruder 2018)."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from common.errors import ConfigError
from common.finetune.base import FinetuneStrategy, log_param_groups, unwrap

__all__ = ["DiscriminativeLR", "check_decay", "layerwise_lrs", "layerwise_rates"]


def check_decay(decay: float, owner: str) -> float:
    """``decay`` as a float in (0, 1]; raises :class:`ConfigError` naming ``owner`` otherwise."""
    if not 0 < float(decay) <= 1:
        raise ConfigError(f"{owner} decay must be in (0, 1], got {decay}")
    return float(decay)


def layerwise_lrs(n_groups: int, base_lr: float, decay: float) -> list[float]:
    """ULMFiT's discriminative rates for ``n_groups`` groups listed stem first: the last (head) gets ``base_lr``,
    each one below it ``decay`` times the rate of the group above."""
    depth = n_groups - 1
    return [base_lr * decay ** (depth - i) for i in range(n_groups)]


def layerwise_rates(groups: list[Any], new: set[str], base_lr: float, decay: float) -> list[float]:
    """:func:`layerwise_lrs` over the pretrained groups only: the head and the groups in ``new`` (no pretrained
    weight) train at ``base_lr``; pretrained group k counted from the top (the first below the head k=1) at
    ``base_lr * decay**k``. Without new groups this is :func:`layerwise_lrs`."""
    pretrained = [g.name for g in groups[:-1] if g.name not in new]
    depth = {name: len(pretrained) - i for i, name in enumerate(pretrained)}
    return [base_lr * decay ** depth.get(g.name, 0) for g in groups]


class DiscriminativeLR(FinetuneStrategy):
    """Discriminative fine-tuning: Howard & Ruder, ACL 2018 (section 3.2).

    Variant implemented: every layer group trains; group ``k`` counted from the top (head ``k=0``, the
    group below it ``k=1`` ... the stem last) gets ``lr = base_lr * decay**k``. ULMFiT's ``decay = 1/2.6``.

    Args:
        decay: per-group multiplier in (0, 1].
        transfer_report: the bundle's ``pretrained`` load report: groups without any pretrained weight train at
            the base lr with the head, and the decay counts over the pretrained groups only.
    """

    def __init__(self, decay: float = 1 / 2.6, transfer_report: Any = None) -> None:
        self.decay = check_decay(decay, "DiscriminativeLR")
        self.transfer_report = transfer_report

    def param_groups(self, model: nn.Module, base_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        groups = self.groups(model)
        self.set_trainable(model, groups, True)
        rates = layerwise_rates(groups, self.new_groups(model), base_lr, self.decay)
        out = [self.make_group(model, g, lr, weight_decay) for g, lr in zip(groups, rates, strict=True)]
        log_param_groups(out, unwrap(model))
        return out
