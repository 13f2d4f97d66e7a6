"""BitFit (Ben Zaken, Ravfogel, Goldberg, ACL 2022): train only the bias terms and the head."""

from __future__ import annotations

import logging
from typing import Any

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from common.errors import ConfigError
from common.finetune.base import FinetuneStrategy, log_param_groups, unwrap
from common.finetune.freezing import set_parameters_trainable, set_trainable

__all__ = ["BitFit", "bitfit_parameter_names"]

logger = logging.getLogger(__name__)

_NORMS = (_BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


def bitfit_parameter_names(model: nn.Module, include_norm_weights: bool = False) -> list[str]:
    """Names of every bias of ``model`` (a module's ``bias`` parameter), in registration order.

    Args:
        model: the network.
        include_norm_weights: also the affine scale (``weight``) of every normalisation layer
            (BatchNorm, LayerNorm, GroupNorm, InstanceNorm).

    Example:
        >>> bitfit_parameter_names(nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4)))
        ['1.bias']
    """
    names = []
    for module_name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            if param_name == "bias" or (include_norm_weights and isinstance(module, _NORMS)):
                names.append(f"{module_name}.{param_name}" if module_name else param_name)
    return names


class BitFit(FinetuneStrategy):
    """BitFit: Ben Zaken, Ravfogel, Goldberg, "BitFit: Simple Parameter-efficient Fine-tuning for
    Transformer-based Masked Language-models", ACL 2022. Reference: github.com/benzakenelad/BitFit,
    ``src/glue_evaluator.py`` (``_deactivate_relevant_gradients``: freeze everything, then unfreeze the
    parameters whose name contains ``"bias"``, with the default ``bias_terms=["all"]``, and the classifier).

    Variant implemented (default, reported as ``bitfit``): every bias and the whole head train, every other
    weight is frozen. A bias is a module's ``bias`` parameter, which on BERT is exactly the reference's
    substring match; Swin-T's ``relative_position_bias_table`` is not one and stays frozen. Normalisation
    biases (BatchNorm/LayerNorm ``bias``, the shift) train, their scales (``weight``) do not. A BatchNorm
    layer whose bias trains keeps updating its running statistics, as in full fine-tuning; layers with no
    trainable parameter hold theirs.

    Note: torchvision ResNet and DenseNet convolutions are built with ``bias=False``, so on them plain
    BitFit is close to linear probing plus the BatchNorm biases (ResNet-50: about 0.1% of the backbone);
    VGG convolutions and Swin linear layers carry biases.

    ``include_norm_weights=True`` is the earlier medxfer variant (reported as ``bitfit+norm``, "BitFit+norm"):
    the scale of every normalisation layer (BatchNorm, LayerNorm, GroupNorm, InstanceNorm) trains too.

    Args:
        include_norm_weights: also train every normalisation layer's affine scale.

    Example:
        >>> import torchvision
        >>> model = torchvision.models.resnet18(num_classes=2)
        >>> groups = BitFit().param_groups(model, 0.01)
        >>> model.conv1.weight.requires_grad, model.bn1.weight.requires_grad, model.bn1.bias.requires_grad
        (False, False, True)
    """

    def __init__(self, include_norm_weights: bool = False) -> None:
        if not isinstance(include_norm_weights, bool):
            raise ConfigError(f"BitFit include_norm_weights must be true or false, got {include_norm_weights!r}")
        self.include_norm_weights = include_norm_weights

    @property
    def display_name(self) -> str:
        """``"BitFit"``, or ``"BitFit+norm"`` with ``include_norm_weights``."""
        return "BitFit+norm" if self.include_norm_weights else "BitFit"

    def param_groups(self, model: nn.Module, base_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        inner = unwrap(model)
        *_, head = self.groups(model)
        chosen = set(bitfit_parameter_names(inner, self.include_norm_weights))
        set_trainable(inner, [""], False)
        set_trainable(inner, list(head.modules), True)
        # BatchNorms whose affine parameters train keep updating their statistics (set_parameters_trainable).
        set_parameters_trainable(inner, [n for n in chosen if not head.owns(n)], True)
        bits = [p for n, p in inner.named_parameters() if n in chosen and not head.owns(n)]
        out = [{"name": "bitfit", "params": bits, "lr": base_lr, "weight_decay": 0.0},
               self.make_group(model, head, base_lr, weight_decay)]
        logger.info("%s: %d bias%s tensors train with the head", self.display_name, len(bits),
                    " and normalisation-scale" if self.include_norm_weights else "")
        log_param_groups(out, inner)
        return out
