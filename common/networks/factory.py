"""Build a classifier: a registered backbone whose head outputs ``num_classes`` logits."""

from __future__ import annotations

import torch.nn as nn

from common.errors import ConfigError
from common.networks.registry import get_arch

__all__ = ["build_classifier", "get_submodule_name"]


def get_submodule_name(model: nn.Module, name: str) -> nn.Module:
    """Return ``model``'s submodule ``name`` or raise ``ConfigError`` listing nearby module names."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        top = [n for n, _ in model.named_children()]
        raise ConfigError(f"module {name!r} not found; top-level modules are: {', '.join(top)}") from None


def build_classifier(arch: str = "densenet121", num_classes: int = 14) -> nn.Module:
    """Build ``arch`` with randomly initialised weights and a fresh ``num_classes``-logit linear head.

    Pretrained weights are loaded afterwards by :func:`common.networks.load_pretrained`, so the network
    definition is the same in train.json and inference.json. The network returns logits.

    Args:
        arch: one of :data:`common.networks.ARCHITECTURES` (densenet121, resnet18, resnet50, vgg19, swin_t,
            efficientnet_lite0).
        num_classes: number of output logits (14 for ChestX-ray14).

    Example:
        >>> build_classifier("resnet18", 2).fc.out_features
        2
    """
    if int(num_classes) < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    spec = get_arch(arch)
    model = spec.builder()
    parent_name, _, attr = spec.head.rpartition(".")
    parent = get_submodule_name(model, parent_name) if parent_name else model
    old = getattr(parent, attr) if not attr.isdigit() else parent[int(attr)]
    new = nn.Linear(old.in_features, int(num_classes))
    if attr.isdigit():
        parent[int(attr)] = new
    else:
        setattr(parent, attr, new)
    return model
