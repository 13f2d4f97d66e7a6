"""Surgical fine-tuning (Lee et al., ICLR 2023): train only chosen layer groups."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from common.errors import ConfigError
from common.finetune.base import FinetuneStrategy, log_param_groups, unwrap
from common.networks.layer_groups import find_groups

__all__ = ["Surgical"]


class Surgical(FinetuneStrategy):
    """Surgical fine-tuning: Lee, Chen, Tajwar, Kumar, Yao, Liang, Finn. "Surgical Fine-Tuning Improves
    Adaptation to Distribution Shifts", ICLR 2023.

    Variant implemented: only the named layer groups train (e.g. ``["stem"]`` or ``["block1"]`` for an
    input-level shift, the last block for an output-level shift); everything else is frozen with its
    BatchNorm statistics and left out of the optimizer. The task head also trains when ``train_head``
    (it is new for the task; the paper's output-level variant is ``groups=["head"]``).

    Args:
        groups: layer-group names (see ``common.networks.layer_groups``); unknown names raise.
        train_head: also train the ``head`` group.
    """

    def __init__(self, groups: list[str] | tuple[str, ...] = ("block1",), train_head: bool = True) -> None:
        if not groups:
            raise ConfigError("Surgical needs at least one layer group name in 'groups'")
        self.groups_to_train, self.train_head = list(groups), bool(train_head)

    def param_groups(self, model: nn.Module, base_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        names = [*self.groups_to_train, *(["head"] if self.train_head and "head" not in self.groups_to_train else [])]
        chosen = find_groups(unwrap(model), names)
        self.set_trainable(model, self.groups(model), False)
        self.set_trainable(model, chosen, True)
        out = [self.make_group(model, g, base_lr, weight_decay) for g in chosen]
        log_param_groups(out, unwrap(model))
        return out
