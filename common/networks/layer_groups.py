"""Layer groups (stem ... head) of every supported architecture, from one registry.

A layer group is a named list of module names; its parameters are those under any of the modules. The
groups of a network cover every parameter exactly once and are ordered input -> output, so strategies
can say "the first block", "the last two groups" or "depth from the top". Groups are found by the
network's class, so one registry serves torchvision DenseNet/ResNet/VGG/Swin, MONAI DenseNet121,
EfficientNet, UNet, SwinUNETR and FlexibleUNet with a ResNet encoder (``resnet18_unet``: ``stem``,
``block1..4`` named as in torchvision's ResNet, and ``head`` = decoder + segmentation head).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn
import torchvision.models as tvm
from monai.networks import nets as monai_nets
from monai.networks.nets.resnet import ResNetEncoder

from common.errors import ConfigError
from common.networks.unwrap import unwrap

__all__ = ["LayerGroup", "encoder_modules", "find_groups", "group_parameters", "head_group", "layer_groups"]


@dataclass(frozen=True)
class LayerGroup:
    """A named set of modules, in input -> output order among its siblings."""

    name: str
    modules: tuple[str, ...]

    def owns(self, parameter_name: str) -> bool:
        """True when ``parameter_name`` lies under one of this group's modules."""
        return any(parameter_name == m or parameter_name.startswith(m + ".") for m in self.modules)


def _densenet(model: nn.Module, head: str) -> list[LayerGroup]:
    groups = [LayerGroup("stem", ("features.conv0", "features.norm0"))]
    for i in range(1, 5):
        extra = (f"features.transition{i}",) if i < 4 else ("features.norm5",)
        groups.append(LayerGroup(f"block{i}", (f"features.denseblock{i}", *extra)))
    return [*groups, LayerGroup("head", (head,))]


def _resnet(model: nn.Module) -> list[LayerGroup]:
    blocks = [LayerGroup(f"block{i}", (f"layer{i}",)) for i in range(1, 5)]
    return [LayerGroup("stem", ("conv1", "bn1")), *blocks, LayerGroup("head", ("fc",))]


def _vgg(model: nn.Module) -> list[LayerGroup]:
    groups, current = [], []
    for index, layer in enumerate(model.features):
        current.append(f"features.{index}")
        if isinstance(layer, nn.MaxPool2d):
            groups.append(LayerGroup(f"block{len(groups) + 1}", tuple(current)))
            current = []
    # Every classifier module before the head (Linear, ReLU and Dropout): freezing "fc" then holds its dropouts
    # in eval mode too, as the reference linear probe runs the whole frozen part (common.finetune.freezing).
    hidden = tuple(f"classifier.{i}" for i in range(len(model.classifier) - 1))
    return [*groups, LayerGroup("fc", hidden), LayerGroup("head", ("classifier.6",))]


def _swin(model: nn.Module) -> list[LayerGroup]:
    stages = [LayerGroup("stem", ("features.0",)), LayerGroup("stage1", ("features.1",))]
    stages += [LayerGroup(f"stage{k}", (f"features.{2 * k - 2}", f"features.{2 * k - 1}")) for k in (2, 3)]
    stages.append(LayerGroup("stage4", ("features.6", "features.7", "norm")))
    return [*stages, LayerGroup("head", ("head",))]


def _efficientnet(model: nn.Module) -> list[LayerGroup]:
    # The parameter-free modules belong to the group they run in: the paddings with their convolutions, and the
    # pooling and the dropout before ``_fc`` with "top", so freezing the backbone (LP, the LP phase of LP-FT,
    # cut-off extraction) holds that dropout in eval mode too, as the reference linear probe does. ``_swish`` is
    # one stateless activation shared by the stem and the top; it has no train/eval behaviour to hold.
    def present(*names: str) -> tuple[str, ...]:
        return tuple(name for name in names if hasattr(model, name))

    blocks = [LayerGroup(f"stage{i + 1}", (f"_blocks.{i}",)) for i in range(len(model._blocks))]
    stem = LayerGroup("stem", present("_conv_stem_padding", "_conv_stem", "_bn0"))
    top = LayerGroup("top", present("_conv_head_padding", "_conv_head", "_bn1", "_avg_pooling", "_dropout"))
    return [stem, *blocks, top, LayerGroup("head", ("_fc",))]


def _unet(model: nn.Module) -> list[LayerGroup]:
    encoders, decoders, prefix, level = [], [], "model", 1
    while True:
        node = model.get_submodule(prefix)
        if not isinstance(node, nn.Sequential) or len(node) != 3:
            encoders.append(LayerGroup("bottleneck", (prefix,)))
            break
        encoders.append(LayerGroup(f"encoder{level}", (f"{prefix}.0",)))
        decoders.insert(0, LayerGroup(f"decoder{level}", (f"{prefix}.2",)))
        prefix, level = f"{prefix}.1.submodule", level + 1
    head = decoders.pop()  # the top-level up-sampling layer produces the class maps
    return [*encoders, *decoders, LayerGroup("head", head.modules)]


def _resnet_unet(model: nn.Module) -> list[LayerGroup]:
    # The decoder belongs to the head group: it is never transferred from a classifier, so strategies that
    # freeze or decay "everything but the head" (LP, LP-FT, gradual unfreezing, layer-wise lr) treat the new
    # decoder + segmentation head together as the task-specific part, instead of freezing a random decoder.
    if not isinstance(model.encoder, ResNetEncoder):
        raise ConfigError(f"layer groups of FlexibleUNet are registered for ResNet encoders only; this one has "
                          f"{type(model.encoder).__name__}")
    blocks = [LayerGroup(f"block{i}", (f"encoder.layer{i}",)) for i in range(1, 5)]
    head = LayerGroup("head", ("decoder", "segmentation_head"))
    return [LayerGroup("stem", ("encoder.conv1", "encoder.bn1")), *blocks, head]


def _swin_unetr(model: nn.Module) -> list[LayerGroup]:
    vit = [LayerGroup("stem", ("swinViT.patch_embed",))]
    vit += [LayerGroup(f"stage{i}", (f"swinViT.layers{i}",)) for i in range(1, 5)]
    encoders = LayerGroup("encoder", tuple(f"encoder{i}" for i in (1, 2, 3, 4, 10)))
    decoders = LayerGroup("decoder", tuple(f"decoder{i}" for i in (5, 4, 3, 2, 1)))
    return [*vit, encoders, decoders, LayerGroup("head", ("out",))]


_REGISTRY: list[tuple[type, Callable[[nn.Module], list[LayerGroup]]]] = [
    (tvm.DenseNet, lambda m: _densenet(m, "classifier")),
    (monai_nets.DenseNet, lambda m: _densenet(m, "class_layers.out")),
    (tvm.ResNet, _resnet),
    (tvm.VGG, _vgg),
    (tvm.SwinTransformer, _swin),
    (monai_nets.EfficientNet, _efficientnet),
    (monai_nets.SwinUNETR, _swin_unetr),
    (monai_nets.UNet, _unet),
    (monai_nets.FlexibleUNet, _resnet_unet),
]


def layer_groups(model: nn.Module) -> list[LayerGroup]:
    """Return ``model``'s layer groups, input -> output, the last one named ``"head"``.

    Raises:
        ConfigError: the architecture is not in the registry, or its groups miss a parameter.

    Example:
        >>> [g.name for g in layer_groups(tvm.resnet18())]
        ['stem', 'block1', 'block2', 'block3', 'block4', 'head']
    """
    model = unwrap(model)
    for cls, build in _REGISTRY:
        if isinstance(model, cls):
            groups = build(model)
            break
    else:
        known = ", ".join(cls.__module__.split(".")[0] + "." + cls.__name__ for cls, _ in _REGISTRY)
        raise ConfigError(f"no layer groups registered for {type(model).__name__}; known: {known}")
    orphans = [n for n, _ in model.named_parameters() if not any(g.owns(n) for g in groups)]
    if orphans:
        raise ConfigError(f"layer groups of {type(model).__name__} miss parameters {orphans[:5]}")
    return groups


def find_groups(model: nn.Module, names: list[str] | tuple[str, ...]) -> list[LayerGroup]:
    """Return the groups called ``names`` (in the order given); unknown names raise listing the valid ones."""
    groups = {g.name: g for g in layer_groups(model)}
    unknown = [n for n in names if n not in groups]
    if unknown:
        raise ConfigError(f"unknown layer group(s) {unknown} for {type(model).__name__}; choose from: "
                          f"{', '.join(groups)}")
    return [groups[n] for n in names]


def head_group(model: nn.Module) -> LayerGroup:
    """The group called ``"head"`` (the task-specific output layer)."""
    return layer_groups(model)[-1]


def group_parameters(model: nn.Module, group: LayerGroup) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` pairs of ``group`` in ``model``, in registration order."""
    return [(n, p) for n, p in model.named_parameters() if group.owns(n)]


def encoder_modules(model: nn.Module) -> list[str]:
    """Module names a ``pretrained`` source must fill in a segmentation network: its backbone encoder.

    Every layer group except ``decoder*`` groups and the ``head``; for SwinUNETR only the Swin transformer
    (``swinViT``: stem and stages), because its convolutional ``encoder1..10`` skip blocks belong to the
    segmentation decoder path and are absent from self-supervised Swin UNETR checkpoints; for a ResNet
    FlexibleUNet the ResNet (``encoder.conv1``, ``encoder.bn1``, ``encoder.layer1..4``).

    Example:
        >>> encoder_modules(monai_nets.FlexibleUNet(3, 2, "resnet18"))[:3]
        ['encoder.conv1', 'encoder.bn1', 'encoder.layer1']
    """
    groups = [g for g in layer_groups(model) if g.name != "head" and not g.name.startswith("decoder")]
    if isinstance(unwrap(model), monai_nets.SwinUNETR):
        groups = [g for g in groups if g.name != "encoder"]
    return [m for g in groups for m in g.modules]
