"""Which torchvision architectures medxfer builds, where their classifier head is, and their weights."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn
import torchvision.models as tvm

from common.errors import ConfigError

__all__ = ["ArchSpec", "ARCHITECTURES", "get_arch"]


@dataclass(frozen=True)
class ArchSpec:
    """One supported architecture.

    Attributes:
        builder: torchvision constructor (called with ``weights=None``: weights are loaded separately).
        head: dotted module name of the final ``nn.Linear`` that is replaced for the task.
        imagenet_weights: torchvision weights enum entry whose file the ``"imagenet"`` source expects.
    """

    builder: Callable[..., nn.Module]
    head: str
    imagenet_weights: tvm.WeightsEnum


ARCHITECTURES: dict[str, ArchSpec] = {
    "densenet121": ArchSpec(tvm.densenet121, "classifier", tvm.DenseNet121_Weights.IMAGENET1K_V1),
    "resnet18": ArchSpec(tvm.resnet18, "fc", tvm.ResNet18_Weights.IMAGENET1K_V1),
    "resnet50": ArchSpec(tvm.resnet50, "fc", tvm.ResNet50_Weights.IMAGENET1K_V1),
    "vgg19": ArchSpec(tvm.vgg19, "classifier.6", tvm.VGG19_Weights.IMAGENET1K_V1),
    "swin_t": ArchSpec(tvm.swin_t, "head", tvm.Swin_T_Weights.IMAGENET1K_V1),
}


def get_arch(name: str) -> ArchSpec:
    """Return the :class:`ArchSpec` for ``name`` or raise ``ConfigError`` listing the valid names."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ConfigError(f"unknown architecture {name!r}; choose from: {', '.join(sorted(ARCHITECTURES))}") from None
