"""Freeze and unfreeze parameters; a frozen part runs in eval mode entirely (BatchNorm and dropout).

MONAI's ``SupervisedTrainer`` calls ``network.train()`` every iteration, which would put frozen
BatchNorm layers back into training mode and update their running statistics, and switch the dropouts of a
frozen part back on. A forward pre-hook on each frozen BatchNorm and on each dropout inside a frozen region
sets ``training = False`` right before its forward, so the statistics stay bit-identical and the frozen part
computes exactly what it computes in eval mode: the reference linear probe extracts features with the whole
backbone in eval mode (e.g. VGG-19's classifier dropouts off), and the cached-feature path
(:mod:`common.finetune.feature_cache`) and the uncached path then see the same features. A dropout follows the
state requested for the region that holds it (it has no parameters of its own). This is the only module that
mutates ``requires_grad``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd
from torch.utils.hooks import RemovableHandle

__all__ = [
    "set_trainable",
    "set_parameters_trainable",
    "freeze_all",
    "is_frozen_bn",
    "is_held_dropout",
    "trainable_state",
    "restore_trainable_state",
]

_HOOK_ATTR = "_medxfer_frozen_bn_hook"


def _keep_eval(module: nn.Module, inputs: object) -> None:
    module.training = False


def _freeze_bn(module: nn.Module) -> None:
    if isinstance(module, (_BatchNorm, _DropoutNd)) and getattr(module, _HOOK_ATTR, None) is None:
        handle: RemovableHandle = module.register_forward_pre_hook(_keep_eval)
        setattr(module, _HOOK_ATTR, handle)
        module.eval()


def _unfreeze_bn(module: nn.Module) -> None:
    handle = getattr(module, _HOOK_ATTR, None)
    if handle is not None:
        handle.remove()
        setattr(module, _HOOK_ATTR, None)


def is_frozen_bn(module: nn.Module) -> bool:
    """True when ``module`` is a BatchNorm layer whose statistics are held frozen."""
    return isinstance(module, _BatchNorm) and getattr(module, _HOOK_ATTR, None) is not None


def is_held_dropout(module: nn.Module) -> bool:
    """True when ``module`` is a dropout inside a frozen region, held in eval mode (no dropping)."""
    return isinstance(module, _DropoutNd) and getattr(module, _HOOK_ATTR, None) is not None


def set_trainable(model: nn.Module, module_names: Iterable[str], trainable: bool) -> int:
    """Set ``requires_grad`` of every parameter under ``module_names`` and (un)freeze their BatchNorms and dropouts.

    A BatchNorm layer is frozen only when all its parameters are frozen (so BitFit, which trains the
    affine parameters, keeps normal statistics updates). A dropout under ``module_names`` is held in eval mode
    when freezing and released when unfreezing.

    Args:
        model: the network.
        module_names: dotted module names (``""`` for the whole model).
        trainable: ``True`` to unfreeze, ``False`` to freeze.

    Returns:
        The number of parameter elements changed.
    """
    count = 0
    for name in module_names:
        module = model.get_submodule(name) if name else model
        for param in module.parameters():
            if param.requires_grad != trainable:
                param.requires_grad_(trainable)
                count += param.numel()
        for sub in module.modules():
            if isinstance(sub, _BatchNorm):
                own = list(sub.parameters(recurse=False))
                # affine=False layers have no parameters: they follow the requested state.
                frozen = all(not p.requires_grad for p in own) if own else not trainable
                (_unfreeze_bn if not frozen else _freeze_bn)(sub)
            elif isinstance(sub, _DropoutNd):
                (_unfreeze_bn if trainable else _freeze_bn)(sub)
    return count


def hold_batchnorm_statistics(model: nn.Module) -> int:
    """Keep every BatchNorm layer of ``model`` normalising with its running statistics, never updating them,
    while its affine parameters stay trainable (their ``requires_grad`` is not touched).

    Returns:
        The number of BatchNorm layers held.
    """
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    for layer in layers:
        _freeze_bn(layer)
    return len(layers)


def set_parameters_trainable(model: nn.Module, parameter_names: Iterable[str], trainable: bool) -> int:
    """Set ``requires_grad`` of the named parameters, then refresh every BatchNorm's frozen state.

    A BatchNorm whose affine parameters train keeps updating its statistics; one whose parameters are all
    frozen holds them. Returns the number of parameter elements changed.
    """
    wanted, count = set(parameter_names), 0
    for name, param in model.named_parameters():
        if name in wanted and param.requires_grad != trainable:
            param.requires_grad_(trainable)
            count += param.numel()
    for module in model.modules():
        own = list(module.parameters(recurse=False)) if isinstance(module, _BatchNorm) else []
        if own:
            (_freeze_bn if all(not p.requires_grad for p in own) else _unfreeze_bn)(module)
    return count


def freeze_all(model: nn.Module) -> None:
    """Freeze every parameter and BatchNorm statistic of ``model``."""
    set_trainable(model, [""], False)


def trainable_state(model: nn.Module) -> dict[str, list[str]]:
    """What is frozen now: names of the parameters that train, the BatchNorms whose statistics are held, and the
    dropouts held in eval mode.

    Saved in a resumable checkpoint so a resumed run continues with the same frozen set (LP-FT's phase, gradual
    unfreezing's stage) whatever the strategy derived it from.
    """
    return {
        "trainable": [name for name, p in model.named_parameters() if p.requires_grad],
        "bn_held": [name for name, m in model.named_modules() if is_frozen_bn(m)],
        "dropout_held": [name for name, m in model.named_modules() if is_held_dropout(m)],
    }


def restore_trainable_state(model: nn.Module, state: dict[str, list[str]]) -> None:
    """Apply a :func:`trainable_state` to ``model``: ``requires_grad``, held BatchNorms and dropouts, by name.

    A state saved before dropouts were held (no ``dropout_held``) leaves every dropout released.

    Raises:
        KeyError: a name in ``state`` is not in ``model`` (the checkpoint is from another network).
    """
    params, modules = dict(model.named_parameters()), dict(model.named_modules())
    held_dropouts = state.get("dropout_held", [])
    unknown = [n for n in state["trainable"] if n not in params] + [
        n for n in [*state["bn_held"], *held_dropouts] if n not in modules]
    if unknown:
        raise KeyError(f"not in the network: {unknown[:4]}")
    trainable, held = set(state["trainable"]), set(state["bn_held"]) | set(held_dropouts)
    for name, param in params.items():
        param.requires_grad_(name in trainable)
    for name, module in modules.items():
        if isinstance(module, (_BatchNorm, _DropoutNd)):
            (_freeze_bn if name in held else _unfreeze_bn)(module)
