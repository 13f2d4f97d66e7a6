"""Grad-CAM per finding through MONAI's :class:`monai.visualize.GradCAM` (no CAM code of our own).

Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization"
(https://arxiv.org/abs/1610.02391); the computation is MONAI's (``monai/visualize/class_activation_maps.py``,
``GradCAM.compute_map``): channel weights = spatial mean of d(logit_c)/d(activation), map = ReLU(sum_k w_k A_k),
upsampled bilinearly to the input size. Two choices are ours:

* Target layer per architecture (:data:`TARGET_LAYERS`): DenseNet-121 ``features.denseblock4`` (the last dense block;
  ``features.norm5`` cannot be hooked because torchvision's ``DenseNet.forward`` applies ``relu(inplace=True)`` to its
  output, which PyTorch's full backward hooks forbid), ResNet-18/50 ``layer4``, Swin-T ``permute`` (the
  channels-first view of stage 4 after the final LayerNorm: torchvision's ``features.7`` and ``norm`` return
  channels-last ``(B, H, W, C)`` maps, which MONAI's Grad-CAM would read with the wrong channel axis). Other
  architectures are refused (EfficientNet-Lite0's in-place ReLU6 after ``_bn1`` cannot be hooked either).
* Post-processing: each map is divided by its own maximum (0 stays 0, the peak becomes 1). MONAI's default
  ``default_normalizer`` maps (min, max) to (1, 0), i.e. it *flips* the map (hot becomes 0), which would make a
  pointing game point at the coldest pixel.

MONAI's ``ModelWithHooks`` registers forward/backward hooks on the target layer that stay on the network, and calls
``network.eval()`` during each map (restoring the previous mode); build one :class:`FindingGradCAM` per network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.visualize import GradCAM

from common.errors import ConfigError

__all__ = ["TARGET_LAYERS", "target_layer", "max_normalise", "FindingGradCAM"]

#: Architecture -> module whose activations and gradients Grad-CAM uses.
TARGET_LAYERS: dict[str, str] = {
    "densenet121": "features.denseblock4",
    "resnet18": "layer4",
    "resnet50": "layer4",
    "swin_t": "permute",
}


def target_layer(arch: str) -> str:
    """The Grad-CAM target layer of ``arch``; ``ConfigError`` listing the supported architectures otherwise."""
    if arch not in TARGET_LAYERS:
        raise ConfigError(f"Grad-CAM has no target layer for architecture {arch!r}; supported: "
                          f"{', '.join(f'{a} ({layer})' for a, layer in TARGET_LAYERS.items())}")  # fmt: skip
    return TARGET_LAYERS[arch]


def max_normalise(maps: torch.Tensor) -> torch.Tensor:
    """Divide each map of a ``(B, 1, *spatial)`` batch by its maximum (all-zero maps stay zero)."""
    peak = maps.flatten(1).amax(1).clamp_min(torch.finfo(maps.dtype).tiny)
    return maps / peak.view(-1, *[1] * (maps.dim() - 1))


class FindingGradCAM:
    """One Grad-CAM map per requested class for a batch, at the input's resolution.

    Args:
        network: a classifier returning logits ``(B, C)``.
        arch: the architecture name (picks the layer from :data:`TARGET_LAYERS`), or ``None`` with ``layer``.
        layer: a module name overriding the per-architecture choice.

    Example:
        >>> from common.networks import build_classifier
        >>> cam = FindingGradCAM(build_classifier("resnet18", 3), "resnet18")
        >>> cam(torch.rand(2, 3, 32, 32), [0, 2]).shape
        torch.Size([2, 2, 32, 32])
    """

    def __init__(self, network: nn.Module, arch: str | None = None, layer: str | None = None) -> None:
        if layer is None:
            if arch is None:
                raise ConfigError("FindingGradCAM needs arch or layer")
            layer = target_layer(arch)
        names = {name for name, _ in network.named_modules()}
        if layer not in names:
            raise ConfigError(f"Grad-CAM target layer {layer!r} is not a module of the network "
                              f"({type(network).__name__})")  # fmt: skip
        self.layer = layer
        self.cam = GradCAM(nn_module=network, target_layers=layer, postprocessing=max_normalise)

    def __call__(self, images: torch.Tensor, class_indices: Sequence[int]) -> torch.Tensor:
        """Maps ``(B, len(class_indices), *spatial)`` in [0, 1], one channel per class, detached.

        The input is copied with ``requires_grad`` so that the map exists even for a network with frozen weights.
        """
        x = images.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            maps = [self.cam(x, class_idx=int(index)) for index in class_indices]
        return torch.cat(maps, dim=1).detach()
