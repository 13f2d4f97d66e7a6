"""L2-SP and L1-SP (Li, Grandvalet, Davoine, ICML 2018): pull the backbone towards its starting point."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn as nn

from common.errors import ConfigError
from common.finetune.base import FinetuneStrategy, log_param_groups, unwrap
from common.networks.weights import TransferReport

__all__ = ["L2SP", "L1SP"]

logger = logging.getLogger(__name__)


class L2SP(FinetuneStrategy):
    """L2-SP: Li, Grandvalet, Davoine. "Explicit Inductive Bias for Transfer Learning with Convolutional
    Networks", ICML 2018 (eq. 3).

    Variant implemented: ``loss + alpha/2 * ||w_S - w_S0||_2^2 + beta/2 * ||w_new||_2^2`` where ``w_S`` are
    the transferred parameters outside the head, ``w_S0`` their values when the optimizer groups are built
    (after the pretrained weights were loaded), and ``w_new`` the parameters that have no pretrained value:
    the head, plus (given ``transfer_report``) every tensor the source did not fill, such as a segmentation
    decoder or a whole network trained from ``"none"`` (the paper's "new layers"). Without a report every
    parameter outside the head counts as transferred. The optimizer's weight decay is 0 on every group so
    no parameter is penalised twice.

    Reference code: thuml/Transfer-Learning-Library, ``tllib/regularization/delta.py`` (``SPRegularization``,
    ``L2Regularization``: 0.5 * squared norms) and ``examples/task_adaptation/image_classification/delta.py``
    (SGD, momentum 0.9, nesterov, no weight decay, lr 0.01, trade-offs 0.01 / 0.01). The overlays
    ``configs/finetune/l2_sp.json`` / ``l1_sp.json`` ship that optimizer: under Adam(W) the penalty's gradient
    is divided per parameter by its running RMS, so alpha and beta stop meaning what the paper means. The
    earlier AdamW overlays stay available as ``l2_sp_adamw.json`` / ``l1_sp_adamw.json``.

    Args:
        alpha: strength of the pull towards the starting point (>= 0; the paper tunes 1e-3 .. 1e-1).
        beta: L2 strength on the new parameters (>= 0).
        transfer_report: the :class:`~common.networks.TransferReport` of the bundle's ``pretrained`` load
            (``"@pretrained_report"`` in a config); its ``loaded`` keys are the transferred ones.
    """

    def __init__(self, alpha: float = 0.01, beta: float = 0.01, transfer_report: TransferReport | None = None) -> None:
        if float(alpha) < 0 or float(beta) < 0:
            raise ConfigError(f"{type(self).__name__} alpha and beta must be >= 0, got {alpha}, {beta}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.transfer_report = transfer_report
        self._shared: list[tuple[nn.Parameter, torch.Tensor]] = []
        self._head: list[nn.Parameter] = []

    def param_groups(self, model: nn.Module, base_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        groups = self.groups(model)
        self.set_trainable(model, groups, True)
        out = [self.make_group(model, g, base_lr, 0.0) for g in groups]
        names = {id(p): n for n, p in unwrap(model).named_parameters()}
        loaded = set(self.transfer_report.loaded) if self.transfer_report is not None else None
        backbone = [p for g in out[:-1] for p in g["params"]]
        transferred = [p for p in backbone if loaded is None or names[id(p)] in loaded]
        self._shared = [(p, p.detach().clone()) for p in transferred]
        kept = {id(p) for p in transferred}
        self._head = [p for p in backbone if id(p) not in kept] + list(out[-1]["params"])
        logger.info("%s: %d tensors pulled towards their pretrained values, %d new tensors with L2 (beta)",
                    type(self).__name__, len(self._shared), len(self._head))
        log_param_groups(out, unwrap(model))
        return out

    def distance(self, current: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """The per-tensor distance term; L2-SP uses the squared L2 norm halved and weighted by alpha."""
        return self.alpha / 2 * (current - start).pow(2).sum()

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        if not self._shared and not self._head:
            return None
        device = (self._shared or [(self._head[0], None)])[0][0].device
        total = torch.zeros((), device=device)
        for param, start in self._shared:
            total = total + self.distance(param, start.to(param.device))
        for param in self._head:
            total = total + self.beta / 2 * param.pow(2).sum()
        return total


class L1SP(L2SP):
    """L1-SP (Li et al. 2018, the L1 variant): ``loss + alpha * ||w_S - w_S0||_1 + beta/2 * ||w_head||_2^2``.

    Same groups, starting point and zero optimizer weight decay as :class:`L2SP`.
    """

    def distance(self, current: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        return self.alpha * (current - start).abs().sum()
