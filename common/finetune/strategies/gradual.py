"""Gradual unfreezing (ULMFiT, Howard & Ruder 2018), last-to-first or first-to-last."""

from __future__ import annotations

import logging
from typing import Any

import torch.nn as nn

from common.errors import ConfigError
from common.finetune.base import FinetuneStrategy, log_param_groups, unwrap

__all__ = ["GradualUnfreezing", "ORDERS"]

logger = logging.getLogger(__name__)

ORDERS = ("last_to_first", "first_to_last")


class GradualUnfreezing(FinetuneStrategy):
    """Gradual unfreezing: Howard & Ruder, "Universal Language Model Fine-tuning for Text
    Classification", ACL 2018 (section 3.3).

    Variant implemented: the head trains from epoch 1; every ``every_n_epochs`` epochs one more backbone
    layer group is unfrozen. ``order="last_to_first"`` (ULMFiT) unfreezes the group next to the head
    first; ``"first_to_last"`` starts from the stem. At epoch ``e`` (1-based) the number of unfrozen
    backbone groups is ``(e - 1) // every_n_epochs``. All groups are in the optimizer from the start
    (frozen ones receive no gradient, so they do not move), at ``base_lr``.

    Args:
        every_n_epochs: epochs between two unfreezing steps (>= 1).
        order: ``"last_to_first"`` or ``"first_to_last"``.
    """

    def __init__(self, every_n_epochs: int = 1, order: str = "last_to_first") -> None:
        if int(every_n_epochs) < 1:
            raise ConfigError(f"GradualUnfreezing every_n_epochs must be >= 1, got {every_n_epochs}")
        if order not in ORDERS:
            raise ConfigError(f"unknown unfreezing order {order!r}; choose from: {', '.join(ORDERS)}")
        self.every_n_epochs, self.order = int(every_n_epochs), order
        self._model: nn.Module | None = None

    def schedule(self, model: nn.Module) -> list[str]:
        """Backbone group names in the order they are unfrozen."""
        backbone = [g.name for g in self.groups(model)[:-1]]
        return backbone[::-1] if self.order == "last_to_first" else backbone

    def trainable_at(self, model: nn.Module, epoch: int) -> list[str]:
        """Names of the groups that train during ``epoch`` (1-based), the head first."""
        unfrozen = self.schedule(model)[: (epoch - 1) // self.every_n_epochs]
        return ["head", *unfrozen]

    def param_groups(self, model: nn.Module, base_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        self._model = model
        self._apply(model, 1)
        groups = [self.make_group(model, g, base_lr, weight_decay) for g in self.groups(model)]
        log_param_groups(groups, unwrap(model))
        return groups

    def _apply(self, model: nn.Module, epoch: int) -> list[str]:
        names = self.trainable_at(model, epoch)
        groups = self.groups(model)
        self.set_trainable(model, [g for g in groups if g.name not in names], False)
        self.set_trainable(model, [g for g in groups if g.name in names], True)
        return names

    def on_epoch_start(self, engine: Any) -> None:
        if self._model is not None:
            names = self._apply(self._model, engine.state.epoch)
            logger.info("gradual unfreezing (%s): epoch %d trains %s", self.order, engine.state.epoch, names)
