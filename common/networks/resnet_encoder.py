"""MONAI's ResNet encoder for FlexibleUNet, in torchvision's layout so classifier weights transfer by name.

MONAI 1.6.1 builds ``ResNetEncoder("resnet18")`` with shortcut type ``"A"`` (average pooling + zero
channel padding, no parameters) because its MedicalNet 3-D weights use it, whereas torchvision's
resnet18 projects with a 1x1 convolution + BatchNorm (``layerN.0.downsample.0/1``, shortcut ``"B"``,
no bias). A torchvision resnet18 state dict therefore has 18 downsample tensors MONAI's resnet18 has no
place for, and its residual sums differ. :class:`TorchvisionResNetEncoder` is MONAI's encoder built
with shortcut ``"B"`` and ``bias_downsample=False`` for every depth (MONAI's resnet50 already is), so
its state dict has exactly torchvision's keys and shapes minus ``fc``: ``conv1``, ``bn1``,
``layer1.0.conv1`` ... ``layer4.1.bn2``, ``layerN.0.downsample.0/1``.
"""

from __future__ import annotations

from monai.networks.nets.resnet import ResNet, ResNetEncoder, get_inplanes, resnet_params

from common.errors import ConfigError

__all__ = ["TORCHVISION_RESNETS", "TorchvisionResNetEncoder"]

# Depths torchvision publishes ImageNet weights for and MONAI's encoder builds.
TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


class TorchvisionResNetEncoder(ResNetEncoder):
    """MONAI ``ResNetEncoder`` with torchvision's projection shortcuts; returns 5 feature maps.

    The feature maps are the stem (after conv1, bn1, ReLU; 1/2 size) and ``layer1``..``layer4`` (1/4 ..
    1/32), as MONAI's encoder returns them; ``layer4``'s map equals torchvision's ``layer4`` output for
    the same weights. The stem keeps MONAI's 7x7 stride-2 convolution (torchvision's too).

    Args:
        model_name: ``"resnet18"``, ``"resnet34"``, ``"resnet50"``, ``"resnet101"`` or ``"resnet152"``.
        in_channels: input channels (3 for RGB and for ImageNet weights).
        spatial_dims: 2 for images.

    Example:
        >>> encoder = TorchvisionResNetEncoder("resnet18")
        >>> tuple(encoder.layer2[0].downsample[0].weight.shape)
        (128, 64, 1, 1)
    """

    def __init__(self, model_name: str, in_channels: int = 3, spatial_dims: int = 2) -> None:
        if model_name not in TORCHVISION_RESNETS:
            raise ConfigError(f"unknown ResNet encoder {model_name!r}; choose from: {', '.join(TORCHVISION_RESNETS)}")
        block, layers, *_ = resnet_params[model_name]
        # ResNetFeatures.__init__ would fix the shortcut type from MONAI's table; call ResNet's directly with
        # the same arguments except shortcut "B" without bias (torchvision's downsample layout).
        ResNet.__init__(
            self,
            block=block,
            layers=layers,
            block_inplanes=get_inplanes(),
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_stride=2,
            shortcut_type="B",
            feed_forward=False,
            bias_downsample=False,
        )
