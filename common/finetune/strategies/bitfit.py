"""BitFit (Ben Zaken, Ravfogel, Goldberg, ACL 2022): train only biases (and norm affine parameters)."""

from __future__ import annotations

import logging
from typing import Any

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from common.finetune.base import FinetuneStrategy, log_param_groups, unwrap
from common.finetune.freezing import set_parameters_trainable, set_trainable

__all__ = ["BitFit", "bitfit_parameter_names"]

logger = logging.getLogger(__name__)

_NORMS = (_BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d)


def bitfit_parameter_names(model: nn.Module) -> list[str]:
    """Names of every bias and every normalisation-layer weight (the affine scale) of ``model``."""
    names = []
    for module_name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            if param_name == "bias" or isinstance(module, _NORMS):
                names.append(f"{module_name}.{param_name}" if module_name else param_name)
    return names


class BitFit(FinetuneStrategy):
    """BitFit: Ben Zaken et al., "BitFit: Simple Parameter-efficient Fine-tuning for Transformer-based
    Masked Language-models", ACL 2022.

    Variant implemented for CNNs and vision transformers: the trainable set is every bias, the affine
    weight of every normalisation layer (BatchNorm, LayerNorm, GroupNorm) and the whole head; all other
    weights are frozen. BatchNorm running statistics keep updating (their affine parameters train). The
    trainable count is logged.
    """

    def param_groups(self, model: nn.Module, base_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        inner = unwrap(model)
        *_, head = self.groups(model)
        chosen = set(bitfit_parameter_names(inner))
        set_trainable(inner, [""], False)
        set_trainable(inner, list(head.modules), True)
        # BatchNorms whose affine parameters train keep updating their statistics (set_parameters_trainable).
        set_parameters_trainable(inner, [n for n in chosen if not head.owns(n)], True)
        bits = [p for n, p in inner.named_parameters() if n in chosen and not head.owns(n)]
        out = [{"name": "bitfit", "params": bits, "lr": base_lr, "weight_decay": 0.0},
               self.make_group(model, head, base_lr, weight_decay)]
        log_param_groups(out, inner)
        return out
