"""A classifier's forward pass as a flat chain of modules, and where it can be cut into trunk + top.

Feature caching (:mod:`common.finetune.feature_cache`) runs the frozen part of a network once per image
and trains the rest on the stored output. That needs a forward pass that *starts* at an intermediate
point, which only exists where the network is a plain sequence of modules: between two entries of
this chain. The ``forward`` of each registered classifier (torchvision's, MONAI's EfficientNet) is written
out here as its chain (functional steps such as ``torch.flatten`` become parameter-free modules);
``nn.Sequential`` containers whose ``forward`` is the stock one are expanded into their children, so
``layer3.1`` of a ResNet or ``features.denseblock4`` of a DenseNet are cut points, while a layer *inside* a
dense block or a residual block is not (its output is not the input of the rest of the network).

Running the chain in order gives bit-identical outputs to ``model(x)`` (tested for every architecture).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch.nn as nn
import torchvision.models as tvm
from monai.networks.nets import EfficientNet
from torchvision.ops import StochasticDepth

from common.errors import ConfigError

__all__ = ["SequentialSplit", "sequential_chain", "split_sequential", "cut_points"]

Chain = list[tuple[str, nn.Module]]

# Parameter-free modules whose output depends on train/eval mode: never moved into a cached trunk.
_MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, StochasticDepth)


@dataclass(frozen=True)
class SequentialSplit:
    """A network cut in two: ``top(trunk(x)) == model(x)``; both share ``model``'s modules.

    Attributes:
        trunk: the chain up to the cut (the frozen part, plus parameter-free steps after it).
        top: the rest of the chain.
        trunk_names: chain entry names of the trunk, input -> output.
        top_names: chain entry names of the top.
    """

    trunk: nn.Sequential
    top: nn.Sequential
    trunk_names: tuple[str, ...]
    top_names: tuple[str, ...]


def _densenet(m: tvm.DenseNet) -> Chain:
    # DenseNet.forward: features -> F.relu -> F.adaptive_avg_pool2d((1, 1)) -> torch.flatten(1) -> classifier
    return [("features", m.features), ("<relu>", nn.ReLU()), ("<adaptive_avg_pool2d>", nn.AdaptiveAvgPool2d((1, 1))),
            ("<flatten>", nn.Flatten(1)), ("classifier", m.classifier)]


def _resnet(m: tvm.ResNet) -> Chain:
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool")
    return [*((n, m.get_submodule(n)) for n in names), ("<flatten>", nn.Flatten(1)), ("fc", m.fc)]


def _vgg(m: tvm.VGG) -> Chain:
    return [("features", m.features), ("avgpool", m.avgpool), ("<flatten>", nn.Flatten(1)),
            ("classifier", m.classifier)]


def _swin(m: tvm.SwinTransformer) -> Chain:
    names = ("features", "norm", "permute", "avgpool", "flatten", "head")
    return [(n, m.get_submodule(n)) for n in names]


def _efficientnet(m: EfficientNet) -> Chain:
    # MONAI EfficientNet.forward: padded stem conv -> bn -> act -> blocks -> padded head conv -> bn -> act -> pool
    # -> flatten -> dropout -> fc. The activation module is shared by stem and head, as in forward.
    names = ("_conv_stem_padding", "_conv_stem", "_bn0", "_swish", "_blocks", "_conv_head_padding", "_conv_head",
             "_bn1", "_swish", "_avg_pooling")
    return [*((n, m.get_submodule(n)) for n in names), ("<flatten>", nn.Flatten(1)), ("_dropout", m._dropout),
            ("_fc", m._fc)]


_CHAINS: list[tuple[type, Callable[..., Chain]]] = [
    (tvm.DenseNet, _densenet),
    (tvm.ResNet, _resnet),
    (tvm.VGG, _vgg),
    (tvm.SwinTransformer, _swin),
    (EfficientNet, _efficientnet),
]


def _expand(name: str, module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward and len(module):
        for child_name, child in module.named_children():
            yield from _expand(f"{name}.{child_name}", child)
    else:
        yield name, module


def _param_names(name: str, module: nn.Module) -> set[str]:
    return {f"{name}.{p}" for p, _ in module.named_parameters()}


def sequential_chain(model: nn.Module) -> Chain:
    """``model``'s forward pass as ``(module name, module)`` pairs; running them in order equals ``model(x)``.

    Functional steps are new parameter-free modules named in angle brackets (``"<flatten>"``); every
    other entry is ``model``'s own submodule (shared, not copied), so training a chain entry trains the model.

    Raises:
        ConfigError: ``model`` is not a registered classifier, or the chain misses a parameter.

    Example:
        >>> [n for n, _ in sequential_chain(tvm.resnet18())][-3:]
        ['avgpool', '<flatten>', 'fc']
    """
    for cls, build in _CHAINS:
        if isinstance(model, cls):
            chain = [pair for name, module in build(model) for pair in _expand(name, module)]
            break
    else:
        known = ", ".join(cls.__name__ for cls, _ in _CHAINS)
        raise ConfigError(f"no sequential chain registered for {type(model).__name__}; known: {known}")
    covered = set().union(*(_param_names(n, m) for n, m in chain))
    orphans = [n for n, _ in model.named_parameters() if n not in covered]
    if orphans:
        raise ConfigError(f"sequential chain of {type(model).__name__} misses parameters {orphans[:5]}")
    return chain


def cut_points(model: nn.Module) -> list[str]:
    """Module names after which ``model`` can be cut (chain entries holding parameters), input -> output."""
    return [name for name, module in sequential_chain(model) if any(True for _ in module.parameters())]


def _boundary(chain: Chain, frozen: set[str]) -> int | None:
    """Index of the first chain entry after the frozen prefix, or ``None`` when no prefix is exactly ``frozen``."""
    seen: set[str] = set()
    for index, (name, module) in enumerate(chain):
        if seen == frozen:
            # Parameter-free, mode-independent steps (ReLU, pooling, flatten) join the trunk: smaller cache.
            while index < len(chain) and not _param_names(*chain[index]) and not any(
                    isinstance(sub, _MODE_DEPENDENT) for sub in chain[index][1].modules()):
                index += 1
            return index
        seen |= _param_names(name, module)
        if not seen <= frozen:
            return None
    return len(chain) if seen == frozen else None


def _not_a_boundary(model: nn.Module, chain: Chain, frozen: set[str]) -> str:
    """The error message for a frozen set that ends inside a chain entry, naming the cut points around it."""
    order = {n: i for i, (n, _) in enumerate(model.named_parameters())}
    last = max(frozen, key=lambda n: order.get(n, -1)) if frozen else ""
    holders = [name for name, module in chain if _param_names(name, module)]
    inside = next((name for name, module in chain if last in _param_names(name, module)), holders[-1])
    around = holders[max(holders.index(inside) - 1, 0): holders.index(inside) + 1]
    return (f"cannot cache features of {type(model).__name__} frozen up to {last!r}: that is not a sequential "
            f"boundary (it lies inside {inside!r}, whose output is not the input of the rest of the network). Cut "
            f"after {' or '.join(reversed(around))} instead (all cut points: common.networks.sequential.cut_points), "
            f"or set cache_features to false")


def split_sequential(model: nn.Module, frozen: list[str] | set[str]) -> SequentialSplit:
    """Cut ``model`` into trunk and top with ``top(trunk(x)) == model(x)`` and the trunk holding ``frozen``.

    Both are ``nn.Sequential`` over ``model``'s own modules (parameters shared). The cut lies right after
    the last parameter in ``frozen``; parameter-free steps that do not depend on train/eval mode (ReLU,
    pooling, flatten) follow into the trunk, dropout and stochastic depth stay in the top.

    Args:
        model: a registered classifier (see :func:`sequential_chain`).
        frozen: parameter names of the part to cut off; must be every parameter of a prefix of the chain.

    Example:
        >>> model = tvm.resnet18()
        >>> split_sequential(model, [n for n, _ in model.named_parameters() if not n.startswith("fc.")]).top_names
        ('fc',)

    Raises:
        ConfigError: ``frozen`` is not a prefix of the chain (the cut would lie inside a block), or it
            holds every parameter (nothing left to train).
    """
    chain = sequential_chain(model)
    cut = _boundary(chain, set(frozen))
    if cut is None:
        raise ConfigError(_not_a_boundary(model, chain, set(frozen)))
    if cut >= len(chain):
        raise ConfigError(f"every parameter of {type(model).__name__} is frozen; nothing is left to train")
    return SequentialSplit(trunk=nn.Sequential(*(module for _, module in chain[:cut])),
                           top=nn.Sequential(*(module for _, module in chain[cut:])),
                           trunk_names=tuple(name for name, _ in chain[:cut]),
                           top_names=tuple(name for name, _ in chain[cut:]))
