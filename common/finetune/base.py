"""The fine-tuning strategy protocol and the plumbing every strategy shares.

A strategy is a small object with no-op defaults (DESIGN.md 4.3):

* ``param_groups(model, base_lr, weight_decay)`` -> optimizer parameter groups, built once before the
  optimizer and the scheduler; each group is a dict with ``name``, ``params``, ``lr``, ``weight_decay``.
  Parameters frozen for the whole run are left out; ones unfrozen later are included, frozen.
* ``on_epoch_start(engine)``: change what trains, or learning rates, between epochs.
* ``penalty(model)`` -> a tensor added to the loss (or ``None``).
* ``after_backward(engine)``: look at or change gradients before the optimizer step.

:class:`common.finetune.FinetuneHandler` calls these from a MONAI ``SupervisedTrainer``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn as nn

from common.finetune.freezing import restore_trainable_state, set_trainable, trainable_state
from common.networks.layer_groups import LayerGroup, group_parameters, layer_groups
from common.networks.unwrap import unwrap

__all__ = ["FinetuneStrategy", "log_param_groups", "set_group_lrs", "unwrap"]

logger = logging.getLogger(__name__)


def log_param_groups(groups: list[dict[str, Any]], model: nn.Module) -> None:
    """Log one line per group (name, parameter count, lr) and the trainable total."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for g in groups for p in g["params"] if p.requires_grad)
    for group in groups:
        count = sum(p.numel() for p in group["params"])
        state = "trainable" if any(p.requires_grad for p in group["params"]) else "frozen"
        logger.info("param group %-12s %10d params  lr %.3g  wd %.3g  %s", group["name"], count, group["lr"],
                    group.get("weight_decay", 0.0), state)
    logger.info("trainable parameters: %d of %d (%.1f%%)", trainable, total, 100.0 * trainable / max(total, 1))


def set_group_lrs(optimizer: torch.optim.Optimizer, new_base: dict[str, float], scheduler: Any = None) -> None:
    """Give the named optimizer groups a new base learning rate, keeping the scheduler's progress.

    The group's current schedule factor (``lr / initial_lr``) is kept, ``initial_lr`` becomes the new base,
    and a scheduler's ``base_lrs`` entry follows, so cosine, step, exponential and lambda schedules all
    continue from where they were with the new base.
    """
    # Multiplicative schedules give every group the same factor lr / initial_lr; read it from any group.
    factor = next((g["lr"] / g["initial_lr"] for g in optimizer.param_groups if g.get("initial_lr")), 1.0)
    for index, group in enumerate(optimizer.param_groups):
        if group.get("name") not in new_base:
            continue
        base = new_base[group["name"]]
        group["lr"] = base * factor
        if "initial_lr" in group:
            group["initial_lr"] = base
        if scheduler is not None and hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs[index] = base


class FinetuneStrategy:
    """Base class: full fine-tuning behaviour (every group trainable at ``base_lr``) and no-op hooks.

    Subclasses override what they change. ``self.lr_scheduler`` is set by the handler when the bundle
    gives it one, so strategies that change learning rates mid-run can keep the schedule.
    """

    lr_scheduler: Any = None
    #: the bundle's ``pretrained`` load (``"@pretrained_report"``); see :meth:`new_groups`.
    transfer_report: Any = None

    def groups(self, model: nn.Module) -> list[LayerGroup]:
        """The model's layer groups (input -> output, last is ``head``)."""
        return layer_groups(unwrap(model))

    def new_groups(self, model: nn.Module) -> set[str]:
        """Names of the groups below the head that received no pretrained weight at all (issue 16 item 8).

        A segmenter built on a pretrained encoder has randomly initialised blocks besides its head (Swin UNETR's
        ``encoder``/``decoder`` convolutions, a UNet decoder): they are not "backbone". LP, LP-FT, gradual
        unfreezing and discriminative rates treat them like the head (trained from the start, at the base lr).
        Known from :attr:`transfer_report`; empty without one, and empty when nothing was loaded at all (a
        network trained from scratch keeps its groups: LP on random features is then the scratch baseline).
        """
        report = self.transfer_report
        loaded = set(getattr(report, "loaded", None) or [])
        if not loaded:
            return set()
        inner = unwrap(model)
        return {g.name for g in self.groups(model)[:-1]
                if (names := [n for n, _ in group_parameters(inner, g)]) and not loaded.intersection(names)}

    def split_groups(self, model: nn.Module) -> tuple[list[LayerGroup], list[LayerGroup]]:
        """``(pretrained backbone groups, trained-from-the-start groups)``: the latter are the new groups and the
        head, in network order."""
        groups, new = self.groups(model), self.new_groups(model)
        backbone = [g for g in groups[:-1] if g.name not in new]
        return backbone, [g for g in groups[:-1] if g.name in new] + [groups[-1]]

    def make_group(self, model: nn.Module, group: LayerGroup, lr: float, weight_decay: float) -> dict[str, Any]:
        """One optimizer group dict for a layer group."""
        params = [p for _, p in group_parameters(unwrap(model), group)]
        return {"name": group.name, "params": params, "lr": lr, "weight_decay": weight_decay}

    def set_trainable(self, model: nn.Module, groups: list[LayerGroup], trainable: bool) -> None:
        """(Un)freeze the given layer groups, BatchNorm statistics included."""
        set_trainable(unwrap(model), [m for g in groups for m in g.modules], trainable)

    def param_groups(self, model: nn.Module, base_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        """Optimizer groups: one per layer group, all trainable at ``base_lr``."""
        groups = [self.make_group(model, g, base_lr, weight_decay) for g in self.groups(model)]
        log_param_groups(groups, unwrap(model))
        return groups

    def on_epoch_start(self, engine: Any) -> None:
        """Called at every EPOCH_STARTED of the trainer (``engine.state.epoch`` is 1-based)."""

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """A regulariser added to the loss, or ``None``."""
        return None

    def after_backward(self, engine: Any) -> None:
        """Called after ``loss.backward()`` and before the optimizer step."""

    def state_dict(self, model: nn.Module) -> dict[str, Any]:
        """What a resumed run needs to continue this strategy: the frozen set and :meth:`extra_state`.

        Learning rates live in the optimizer's and the scheduler's own state dicts, saved beside this.
        """
        return {"frozen": trainable_state(unwrap(model)), "extra": self.extra_state()}

    def load_state_dict(self, state: dict[str, Any], model: nn.Module) -> None:
        """Restore :meth:`state_dict` into this strategy and ``model`` (called before the first resumed epoch)."""
        restore_trainable_state(unwrap(model), state["frozen"])
        self.load_extra_state(state.get("extra", {}))

    def extra_state(self) -> dict[str, Any]:
        """Strategy-specific state that is neither the frozen set nor in the optimizer (JSON-able); none by default."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state`."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_") and k != "lr_scheduler")
        return f"{type(self).__name__}({args})"
