"""LP-FT (Kumar et al. 2022): linear probing first, then full fine-tuning at a lower learning rate."""

from __future__ import annotations

import logging
from typing import Any

import torch.nn as nn

from common.errors import ConfigError
from common.finetune.base import FinetuneStrategy, log_param_groups, set_group_lrs, unwrap
from common.finetune.freezing import hold_batchnorm_statistics

__all__ = ["LPFT"]

logger = logging.getLogger(__name__)


class LPFT(FinetuneStrategy):
    """LP-FT: Kumar, Raghunathan, Jones, Ma, Liang. "Fine-Tuning can Distort Pretrained Features and
    Underperform Out-of-Distribution", ICLR 2022.

    Variant implemented: epochs ``1..lp_epochs`` train the head only (backbone frozen, BatchNorm
    statistics held); at the start of epoch ``lp_epochs + 1`` every group is unfrozen and every group's
    base learning rate becomes ``base_lr * ft_lr_scale`` (the head continues from its LP weights; the
    optimizer keeps its state; the scheduler's progress is kept).

    BatchNorm: during LP the backbone normalises with its pretrained running statistics. With
    ``hold_bn_stats=False`` (default) fine-tuning switches to batch statistics, which shifts the features the
    probed head was fitted to (measured on the embedded demo: validation AUC fell from 0.72 to 0.61 at the
    switch); ``hold_bn_stats=True`` keeps the running statistics through fine-tuning (BatchNorm affine
    parameters still train), so the head keeps seeing the features it was probed on.

    Args:
        lp_epochs: epochs of linear probing (>= 1).
        ft_lr_scale: learning-rate multiplier for the fine-tuning phase (> 0; the paper uses a smaller lr).
        hold_bn_stats: keep BatchNorm running statistics frozen in the fine-tuning phase too.
        transfer_report: the bundle's ``pretrained`` load report: groups without any pretrained weight train
            with the head in the LP phase (:meth:`FinetuneStrategy.new_groups`).
    """

    def __init__(self, lp_epochs: int = 1, ft_lr_scale: float = 0.1, hold_bn_stats: bool = False,
                 transfer_report: Any = None) -> None:
        self.transfer_report = transfer_report
        if int(lp_epochs) < 1:
            raise ConfigError(f"LPFT lp_epochs must be >= 1, got {lp_epochs}")
        if float(ft_lr_scale) <= 0:
            raise ConfigError(f"LPFT ft_lr_scale must be > 0, got {ft_lr_scale}")
        self.lp_epochs, self.ft_lr_scale = int(lp_epochs), float(ft_lr_scale)
        self.hold_bn_stats = bool(hold_bn_stats)
        self._model: nn.Module | None = None
        self._base: dict[str, float] = {}

    def param_groups(self, model: nn.Module, base_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        backbone, trained = self.split_groups(model)
        self._model = model
        self.set_trainable(model, backbone, False)
        self.set_trainable(model, trained, True)
        groups = [self.make_group(model, g, base_lr, weight_decay) for g in self.groups(model)]
        self._base = {g["name"]: base_lr for g in groups}
        log_param_groups(groups, unwrap(model))
        return groups

    def on_epoch_start(self, engine: Any) -> None:
        if engine.state.epoch != self.lp_epochs + 1 or self._model is None:
            return
        self.set_trainable(self._model, self.groups(self._model), True)
        if self.hold_bn_stats:
            hold_batchnorm_statistics(unwrap(self._model))
        set_group_lrs(engine.optimizer, {k: v * self.ft_lr_scale for k, v in self._base.items()}, self.lr_scheduler)
        logger.info("LP-FT: epoch %d starts full fine-tuning at %.3g x the base lr%s", engine.state.epoch,
                    self.ft_lr_scale, " (BatchNorm statistics held)" if self.hold_bn_stats else "")
