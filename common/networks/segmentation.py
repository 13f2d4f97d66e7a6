"""Build a 2-D segmentation network: MONAI UNet, or a FlexibleUNet whose encoder is a classifier backbone.

``"unet"`` is the histology bundle's original MONAI ``UNet`` (same parameters, so its checkpoints load).
``"resnet18_unet"`` / ``"resnet50_unet"`` are MONAI ``FlexibleUNet`` s with a
:class:`~common.networks.resnet_encoder.TorchvisionResNetEncoder` under ``encoder.``: the weights of a
torchvision resnet classifier (ImageNet, or a stage-2 / classification bundle's checkpoint) fill it by
name, see :func:`common.networks.load_pretrained`. Networks return logits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch.nn as nn
from monai.networks.nets import FlexibleUNet, UNet

from common.errors import ConfigError
from common.networks.registry import get_arch
from common.networks.resnet_encoder import TorchvisionResNetEncoder

__all__ = ["SEGMENTERS", "SegmenterSpec", "build_segmenter", "check_patch_size", "get_segmenter"]


@dataclass(frozen=True)
class SegmenterSpec:
    """One segmentation architecture.

    Attributes:
        builder: called with ``num_classes``, returns the network with random weights.
        size_multiple: every side of an input patch must be a multiple of this (the encoder's total stride).
        backbone: the classifier architecture of :data:`common.networks.ARCHITECTURES` whose weights fill
            the encoder (its ImageNet file serves ``pretrained="imagenet"``), or ``None`` (no classifier
            encoder: no ImageNet weights).
        encoder_prefix: where the backbone's modules live in the segmenter (``"encoder."``): a classifier
            state dict's key ``layer1.0.conv1.weight`` is the segmenter's ``encoder.layer1.0.conv1.weight``.
    """

    builder: Callable[[int], nn.Module]
    size_multiple: int
    backbone: str | None = None
    encoder_prefix: str = ""

    def __post_init__(self) -> None:
        if (self.backbone is None) != (not self.encoder_prefix):
            raise ConfigError("SegmenterSpec: backbone and encoder_prefix are set together or not at all")
        if self.backbone is not None:
            get_arch(self.backbone)


def _monai_unet(num_classes: int) -> nn.Module:
    # The bundle's network_def before build_segmenter existed; unchanged so old checkpoints still load.
    return UNet(spatial_dims=2, in_channels=3, out_channels=num_classes, channels=(32, 64, 128, 256, 512),
                strides=(2, 2, 2, 2), num_res_units=2, norm="batch")


def _resnet_unet(backbone: str, num_classes: int) -> nn.Module:
    # pretrained=False: MONAI never downloads here; weights come from load_pretrained. The encoder MONAI
    # builds is swapped for the torchvision-layout one (same feature channels, so the decoder fits).
    model = FlexibleUNet(in_channels=3, out_channels=num_classes, backbone=backbone, pretrained=False,
                         spatial_dims=2)
    model.encoder = TorchvisionResNetEncoder(backbone, in_channels=3, spatial_dims=2)
    return model


SEGMENTERS: dict[str, SegmenterSpec] = {
    "unet": SegmenterSpec(_monai_unet, size_multiple=16),
    "resnet18_unet": SegmenterSpec(partial(_resnet_unet, "resnet18"), 32, "resnet18", "encoder."),
    "resnet50_unet": SegmenterSpec(partial(_resnet_unet, "resnet50"), 32, "resnet50", "encoder."),
}


def get_segmenter(name: str) -> SegmenterSpec:
    """Return the :class:`SegmenterSpec` for ``name`` or raise ``ConfigError`` listing the valid names."""
    try:
        return SEGMENTERS[name]
    except KeyError:
        raise ConfigError(f"unknown segmentation architecture {name!r}; choose from: "
                          f"{', '.join(SEGMENTERS)}") from None


def check_patch_size(arch: str, patch_size: int | Sequence[int]) -> None:
    """Raise ``ConfigError`` unless every side of ``patch_size`` is a positive multiple of ``arch``'s stride.

    The training patch and the sliding-window ``roi_size`` are what the network sees; a side that is not a
    multiple of the encoder's total stride makes the decoder's skip connections mismatch in ``forward``.

    Example:
        >>> check_patch_size("resnet18_unet", [256, 256])
    """
    multiple = get_segmenter(arch).size_multiple
    sides = [int(s) for s in patch_size] if isinstance(patch_size, Sequence) else [int(patch_size)]
    bad = [s for s in sides if s <= 0 or s % multiple]
    if bad:
        raise ConfigError(f"patch_size {patch_size} does not fit {arch}: its encoder downsamples {multiple}x, so every "
                          f"side of the training patch and the sliding-window roi_size must be a multiple of "
                          f"{multiple} (e.g. {multiple * 2}, {multiple * 8}); got {bad}")


def build_segmenter(arch: str = "unet", num_classes: int = 5, patch_size: int | Sequence[int] | None = None
                    ) -> nn.Module:
    """Build the 2-D, 3-channel-input segmentation network ``arch`` with ``num_classes`` output channels.

    Weights are random; :func:`common.networks.load_pretrained` fills the encoder afterwards, so the network
    definition is the same in train.json and inference.json.

    Args:
        arch: ``"unet"`` (MONAI UNet, channels 32..512, 4 stride-2 levels, 2 residual units, batch norm),
            ``"resnet18_unet"`` or ``"resnet50_unet"`` (MONAI FlexibleUNet, torchvision-layout ResNet encoder,
            decoder channels 256-128-64-32-16).
        num_classes: output channels (logits).
        patch_size: the input side(s) the network will be fed (training patch, sliding-window ROI); checked
            by :func:`check_patch_size` so a bad size fails when the network is built, not in ``forward``.

    Raises:
        ConfigError: unknown ``arch``, ``num_classes`` < 1, or a ``patch_size`` the architecture cannot take.

    Example:
        >>> build_segmenter("resnet18_unet", 5, patch_size=64).segmentation_head[0].out_channels
        5
    """
    spec = get_segmenter(arch)
    if int(num_classes) < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    if patch_size is not None:
        check_patch_size(arch, patch_size)
    return spec.builder(int(num_classes))
