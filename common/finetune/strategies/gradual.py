"""Gradual unfreezing (ULMFiT, Howard & Ruder 2018), last-to-first or first-to-last."""

from __future__ import annotations

import logging
from typing import Any

import torch.nn as nn

from common.errors import ConfigError
from common.finetune.base import FinetuneStrategy, log_param_groups, unwrap
from common.finetune.strategies.discriminative import check_decay, layerwise_rates

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
    (frozen ones receive no gradient, so they do not move), at ``base_lr`` unless ``discriminative``.

    A frozen group runs in eval mode: its BatchNorm statistics are held (neither updated nor replaced by batch
    statistics) and its dropouts are off (:mod:`common.finetune.freezing`); it starts updating them in the epoch
    it is unfrozen. ULMFiT's text models have no BatchNorm; holding the statistics of frozen layers is the
    choice that keeps a frozen group computing exactly what it computed when it was frozen.

    ``discriminative=True`` combines it with discriminative fine-tuning as ULMFiT does (section 3.2 + 3.3): group
    ``k`` counted from the top (head ``k=0``) gets ``base_lr * decay**k``, ULMFiT's ``decay = 1/2.6``, as in the
    paper's recipe and fastai's ULMFiT fine-tuning (``freeze_to(-k)`` with ``slice(lr / 2.6**(n-1), lr)`` spread
    geometrically over the n layer groups: a factor 2.6 between neighbours).

    Args:
        every_n_epochs: epochs between two unfreezing steps (>= 1).
        order: ``"last_to_first"`` or ``"first_to_last"``.
        discriminative: layer-wise learning rates as :class:`~common.finetune.strategies.discriminative.
            DiscriminativeLR` (default off: every group at ``base_lr``, the strategy reported as plain gradual).
        decay: the per-group multiplier with ``discriminative`` (in (0, 1]).
        transfer_report: the bundle's ``pretrained`` load report: groups without any pretrained weight train
            from epoch 1 with the head and are not in the unfreezing schedule (:meth:`FinetuneStrategy.new_groups`).
    """

    def __init__(self, every_n_epochs: int = 1, order: str = "last_to_first", discriminative: bool = False,
                 decay: float = 1 / 2.6, transfer_report: Any = None) -> None:
        self.transfer_report = transfer_report
        if int(every_n_epochs) < 1:
            raise ConfigError(f"GradualUnfreezing every_n_epochs must be >= 1, got {every_n_epochs}")
        if order not in ORDERS:
            raise ConfigError(f"unknown unfreezing order {order!r}; choose from: {', '.join(ORDERS)}")
        self.every_n_epochs, self.order = int(every_n_epochs), order
        self.discriminative, self.decay = bool(discriminative), check_decay(decay, "GradualUnfreezing")
        self._model: nn.Module | None = None

    def schedule(self, model: nn.Module) -> list[str]:
        """Pretrained backbone group names in the order they are unfrozen."""
        backbone = [g.name for g in self.split_groups(model)[0]]
        return backbone[::-1] if self.order == "last_to_first" else backbone

    def trainable_at(self, model: nn.Module, epoch: int) -> list[str]:
        """Names of the groups that train during ``epoch`` (1-based), the head first."""
        unfrozen = self.schedule(model)[: (epoch - 1) // self.every_n_epochs]
        return ["head", *sorted(self.new_groups(model)), *unfrozen]

    def param_groups(self, model: nn.Module, base_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        self._model = model
        self._apply(model, 1)
        layer_groups = self.groups(model)
        rates = (layerwise_rates(layer_groups, self.new_groups(model), base_lr, self.decay) if self.discriminative
                 else [base_lr] * len(layer_groups))
        groups = [self.make_group(model, g, lr, weight_decay) for g, lr in zip(layer_groups, rates, strict=True)]
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
