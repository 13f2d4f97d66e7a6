"""Auto-RGN (Lee et al., ICLR 2023): per-tensor learning rates from relative gradient norms."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from common.errors import ConfigError
from common.finetune.base import FinetuneStrategy, set_group_lrs, unwrap

__all__ = ["AutoRGN", "relative_gradient_norms"]

logger = logging.getLogger(__name__)


def _bn_parameter_names(model: nn.Module) -> set[str]:
    return {f"{m}.{p}" for m, mod in model.named_modules() if isinstance(mod, _BatchNorm)
            for p, _ in mod.named_parameters(recurse=False)}


def relative_gradient_norms(engine: Any, names: list[str], n_batches: int) -> dict[str, float]:
    """``||g_i|| / ||theta_i||`` per named parameter, ``g_i`` the mean gradient over ``n_batches`` batches.

    Batches whose loss is not finite are skipped. BatchNorm running statistics are restored afterwards
    and gradients cleared, so the measurement leaves the model exactly as it was.
    """
    model = engine.network
    inner = unwrap(model)
    params = dict(inner.named_parameters())
    saved = {k: v.detach().clone() for k, v in inner.named_buffers()}
    sums = {n: torch.zeros_like(params[n]) for n in names}
    used, batches = 0, iter(engine.data_loader)
    for _ in range(n_batches):
        batch = next(batches, None)
        if batch is None:
            break
        prepared = engine.prepare_batch(batch, engine.state.device, engine.non_blocking)
        inputs, targets, args, kwargs = (*prepared, (), {}) if len(prepared) == 2 else prepared
        model.train()
        model.zero_grad(set_to_none=True)
        loss = engine.loss_function(engine.inferer(inputs, model, *args, **kwargs), targets).mean()
        if not torch.isfinite(loss):
            # Still run a (zero) backward so DistributedDataParallel's gradient all-reduce stays in step
            # across ranks; the batch is not counted.
            sum((p * 0.0).sum() for p in params.values() if p.requires_grad).backward()
            model.zero_grad(set_to_none=True)
            continue
        loss.backward()
        for n in names:
            grad = params[n].grad
            if grad is not None and torch.isfinite(grad).all():
                sums[n] += grad
        used += 1
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for key, buffer in inner.named_buffers():
            buffer.copy_(saved[key])
    out = {}
    for n in names:
        weight = float(params[n].detach().norm())
        out[n] = float((sums[n] / max(used, 1)).norm()) / weight if weight > 0 and used else float("nan")
    return out


class AutoRGN(FinetuneStrategy):
    """Auto-RGN: Lee, Chen, Tajwar, Kumar, Yao, Liang, Finn. "Surgical Fine-Tuning Improves Adaptation to
    Distribution Shifts", ICLR 2023 (section 5, Auto-RGN).

    Variant implemented: every parameter tensor outside BatchNorm is its own optimizer group. At the start
    of each epoch the relative gradient norm ``RGN_i = ||g_i|| / ||theta_i||`` is measured on the first
    ``n_batches`` training batches (mean gradient), normalised by the maximum over tensors, and tensor
    ``i`` gets ``lr_i = RGN_i / max_j RGN_j * base_lr`` (times the scheduler's current factor); the
    optimizer state (momenta) is then reset. BatchNorm parameters are excluded from the rule, as in the
    reference, and train at ``base_lr``; a tensor whose RGN is not finite keeps its previous lr.

    Args:
        n_batches: minibatches used for the measurement (>= 1).
    """

    def __init__(self, n_batches: int = 5) -> None:
        if int(n_batches) < 1:
            raise ConfigError(f"AutoRGN n_batches must be >= 1, got {n_batches}")
        self.n_batches = int(n_batches)
        self._names: list[str] = []
        self._base_lr = 0.0
        self.last_lrs: dict[str, float] = {}

    def param_groups(self, model: nn.Module, base_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        inner = unwrap(model)
        self.set_trainable(model, self.groups(model), True)
        bn = _bn_parameter_names(inner)
        self._names = [n for n, _ in inner.named_parameters() if n not in bn]
        self._base_lr = base_lr
        params = dict(inner.named_parameters())
        groups = [{"name": n, "params": [params[n]], "lr": base_lr, "weight_decay": weight_decay}
                  for n in self._names]
        if bn:
            groups.append({"name": "batchnorm", "params": [params[n] for n in params if n in bn], "lr": base_lr,
                           "weight_decay": weight_decay})
        logger.info("Auto-RGN: %d tensors with their own lr, %d BatchNorm tensors at the base lr, %d parameters",
                    len(self._names), len(bn), sum(p.numel() for p in inner.parameters()))
        return groups

    def extra_state(self) -> dict[str, Any]:
        return {"last_lrs": dict(self.last_lrs)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.last_lrs = {str(k): float(v) for k, v in state.get("last_lrs", {}).items()}

    def on_epoch_start(self, engine: Any) -> None:
        rgn = relative_gradient_norms(engine, self._names, self.n_batches)
        finite = {n: r for n, r in rgn.items() if math.isfinite(r)}
        top = max(finite.values(), default=0.0)
        if top <= 0:
            logger.warning("Auto-RGN: no finite, non-zero gradient measured; learning rates unchanged")
            return
        self.last_lrs = {n: r / top * self._base_lr for n, r in finite.items()}
        set_group_lrs(engine.optimizer, self.last_lrs, self.lr_scheduler)
        engine.optimizer.state.clear()
        ranked = sorted(finite, key=finite.get, reverse=True)
        logger.info("Auto-RGN epoch %d: largest RGN %s, smallest %s", engine.state.epoch, ranked[:3], ranked[-3:])
