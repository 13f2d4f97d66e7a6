"""Cut-off-layer feature extraction: freeze the network up to a cut point, fine-tune the rest."""

from __future__ import annotations

import difflib
import logging
from typing import Any

import torch.nn as nn

from common.errors import ConfigError
from common.finetune.base import FinetuneStrategy, log_param_groups, unwrap
from common.finetune.freezing import set_trainable
from common.networks.sequential import sequential_chain

__all__ = ["CutoffLayer", "split_at_layer", "cutoff_block", "BOUNDARIES", "KERAS_DENSENET121_ALIASES"]

logger = logging.getLogger(__name__)

BOUNDARIES = ("block", "layer")

# Keras DenseNet-121 layer names used in the medical transfer literature -> torchvision module names.
KERAS_DENSENET121_ALIASES = {
    "conv5_block16_2_conv": "features.denseblock4.denselayer16.conv2",
    "conv5_block16_1_conv": "features.denseblock4.denselayer16.conv1",
    "pool4_conv": "features.transition3.conv",
    "pool3_conv": "features.transition2.conv",
    "pool2_conv": "features.transition1.conv",
}


def _check_layer(model: nn.Module, layer: str) -> None:
    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        close = difflib.get_close_matches(layer, list(modules), n=5, cutoff=0.5)
        raise ConfigError(f"cut-off layer {layer!r} not found in {type(model).__name__}; "
                          f"did you mean: {', '.join(close) or '(no close name)'}?")
    if not any(True for _ in modules[layer].parameters()):
        raise ConfigError(f"cut-off layer {layer!r} has no parameters; choose a layer with weights")


def cutoff_block(model: nn.Module, layer: str) -> str:
    """The last step of ``model``'s forward pass that holds part of ``layer``: where a ``"block"`` cut lies.

    The forward pass is :func:`common.networks.sequential.sequential_chain` (the network's modules in the
    order ``forward`` runs them, plain ``nn.Sequential`` containers opened): a layer inside a residual or
    dense block maps to that block, a container (``layer3``) to its last block.

    Example:
        >>> import torchvision
        >>> cutoff_block(torchvision.models.resnet50(), "layer4.0.conv3")
        'layer4.0'

    Raises:
        ConfigError: ``layer`` is not a module with parameters, or ``model`` has no registered chain.
    """
    _check_layer(model, layer)
    steps = [name for name, module in sequential_chain(model) if any(True for _ in module.parameters())]
    touched = [s for s in steps if s == layer or s.startswith(layer + ".") or layer.startswith(s + ".")]
    return touched[-1]


def split_at_layer(model: nn.Module, layer: str, boundary: str = "block") -> tuple[list[str], list[str]]:
    """Split parameter names into (frozen: up to the cut, trained: after it), in registration order.

    Args:
        model: the network.
        layer: the module the cut follows.
        boundary: ``"block"``: the cut lies after the forward-pass step holding ``layer``
            (:func:`cutoff_block`), so every parameter that runs before it is frozen; ``"layer"``: right
            after ``layer``'s own last parameter in registration order (the same block's later modules,
            e.g. a ResNet bottleneck's ``bn3`` and ``downsample`` after ``conv3``, then train).

    Raises:
        ConfigError: ``layer`` is not a module of ``model`` (close names are suggested), has no
            parameters, or ``boundary`` is unknown.
    """
    if boundary not in BOUNDARIES:
        raise ConfigError(f"unknown cut-off boundary {boundary!r}; choose from: {', '.join(BOUNDARIES)}")
    names = [n for n, _ in model.named_parameters()]
    if boundary == "layer":
        _check_layer(model, layer)
        last = max(i for i, n in enumerate(names) if n.startswith(layer + "."))
        return names[: last + 1], names[last + 1:]
    block = cutoff_block(model, layer)
    frozen: set[str] = set()
    for name, module in sequential_chain(model):
        frozen |= {f"{name}.{p}" for p, _ in module.named_parameters()}
        if name == block:
            break
    return [n for n in names if n in frozen], [n for n in names if n not in frozen]


class CutoffLayer(FinetuneStrategy):
    """Feature extraction up to a cut-off layer and fine-tuning above it.

    Variant implemented: the network is cut at a point of its forward pass; every parameter before the cut
    is frozen (BatchNorm statistics held) and left out of the optimizer, everything after it, the head
    included, trains at ``base_lr``. With ``boundary="block"`` (default) the cut lies after the
    forward-pass block holding ``layer`` (:func:`cutoff_block`): the frozen part computes one feature map
    that the rest of the network reads, as in the truncated-network extractors of the literature and in
    :func:`common.finetune.probe_cutoff_layers`. ResNet-50 cut at ``layer4.0.conv3`` freezes all of
    ``layer4.0`` (``bn3`` and ``downsample`` too) and trains ``layer4.1``, ``layer4.2`` and ``fc``; a layer that
    ends its block (DenseNet-121 ``conv5_block16_2_conv``, VGG-19 ``features.34``) or a whole block gives
    the same cut in both modes. ``boundary="layer"`` is the earlier medxfer rule: freeze the parameters
    registered up to and including ``layer``, so a cut inside a block leaves that block's later modules
    trainable.

    ``layer`` is a module name of the network, or a Keras DenseNet-121 name from
    :data:`KERAS_DENSENET121_ALIASES` (``conv5_block16_2_conv`` = ``features.denseblock4.denselayer16.conv2``).
    Use :func:`common.finetune.probe_cutoff_layers` to choose the layer.

    Args:
        layer: the module the cut follows.
        boundary: ``"block"`` or ``"layer"`` (see :func:`split_at_layer`).

    Raises:
        ConfigError: unknown ``boundary``.
    """

    def __init__(self, layer: str = "features.denseblock4.denselayer16.conv2", boundary: str = "block") -> None:
        if boundary not in BOUNDARIES:
            raise ConfigError(f"unknown cut-off boundary {boundary!r}; choose from: {', '.join(BOUNDARIES)}")
        self.layer = KERAS_DENSENET121_ALIASES.get(layer, layer)
        self.boundary = boundary

    def param_groups(self, model: nn.Module, base_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        inner = unwrap(model)
        frozen, trained = split_at_layer(inner, self.layer, self.boundary)
        set_trainable(inner, [""], True)
        frozen_set = set(frozen)
        modules_frozen = [m for m, mod in inner.named_modules()
                          if m and all(f"{m}.{p}" in frozen_set for p, _ in mod.named_parameters())
                          and any(True for _ in mod.parameters())]
        set_trainable(inner, modules_frozen, False)
        params = dict(inner.named_parameters())
        *_, head = self.groups(model)
        above = [params[n] for n in trained if not head.owns(n)]
        out = [{"name": "above_cutoff", "params": above, "lr": base_lr, "weight_decay": weight_decay},
               self.make_group(model, head, base_lr, weight_decay)]
        out = [g for g in out if g["params"]]
        if self.boundary == "block":
            logger.info("cut-off after %s (the forward-pass block holding %s)", cutoff_block(inner, self.layer),
                        self.layer)
        log_param_groups(out, inner)
        return out
