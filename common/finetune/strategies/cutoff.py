"""Cut-off-layer feature extraction: freeze everything up to a named layer, fine-tune the rest."""

from __future__ import annotations

import difflib
from typing import Any

import torch.nn as nn

from common.errors import ConfigError
from common.finetune.base import FinetuneStrategy, log_param_groups, unwrap
from common.finetune.freezing import set_trainable

__all__ = ["CutoffLayer", "split_at_layer", "KERAS_DENSENET121_ALIASES"]

# Keras DenseNet-121 layer names used in the medical transfer literature -> torchvision module names.
KERAS_DENSENET121_ALIASES = {
    "conv5_block16_2_conv": "features.denseblock4.denselayer16.conv2",
    "conv5_block16_1_conv": "features.denseblock4.denselayer16.conv1",
    "pool4_conv": "features.transition3.conv",
    "pool3_conv": "features.transition2.conv",
    "pool2_conv": "features.transition1.conv",
}


def split_at_layer(model: nn.Module, layer: str) -> tuple[list[str], list[str]]:
    """Split parameter names into (up to and including ``layer``, after it), in registration order.

    Raises:
        ConfigError: ``layer`` is not a module of ``model`` (close names are suggested).
    """
    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        close = difflib.get_close_matches(layer, list(modules), n=5, cutoff=0.5)
        raise ConfigError(f"cut-off layer {layer!r} not found in {type(model).__name__}; "
                          f"did you mean: {', '.join(close) or '(no close name)'}?")
    names = [n for n, _ in model.named_parameters()]
    inside = [i for i, n in enumerate(names) if n.startswith(layer + ".")]
    if not inside:
        raise ConfigError(f"cut-off layer {layer!r} has no parameters; choose a layer with weights")
    last = inside[-1]
    return names[: last + 1], names[last + 1:]


class CutoffLayer(FinetuneStrategy):
    """Feature extraction up to a cut-off layer and fine-tuning above it.

    Variant implemented: every parameter registered up to and including ``layer`` is frozen (BatchNorm
    statistics held) and left out of the optimizer; everything after it, the head included, trains at
    ``base_lr``. ``layer`` is a module name of the network, or a Keras DenseNet-121 name from
    :data:`KERAS_DENSENET121_ALIASES` (``conv5_block16_2_conv`` = ``features.denseblock4.denselayer16.conv2``).
    Use :func:`common.finetune.probe_cutoff_layers` to choose the layer.

    Args:
        layer: the last frozen module.
    """

    def __init__(self, layer: str = "features.denseblock4.denselayer16.conv2") -> None:
        self.layer = KERAS_DENSENET121_ALIASES.get(layer, layer)

    def param_groups(self, model: nn.Module, base_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        inner = unwrap(model)
        frozen, trained = split_at_layer(inner, self.layer)
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
        log_param_groups(out, inner)
        return out
