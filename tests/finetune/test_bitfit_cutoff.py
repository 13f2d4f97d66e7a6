"""BitFit and the cut-off boundary against their reference rules, per registered architecture (random weights)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from common.errors import ConfigError
from common.finetune import BitFit, CutoffLayer
from common.finetune.feature_cache import FrozenFeatureCache
from common.networks.registry import ARCHITECTURES
from tests.finetune.conftest import snapshot, train_steps

ARCHS = ["resnet18", "resnet50", "densenet121", "vgg19", "swin_t"]


@cache
def network(arch: str) -> torch.nn.Module:
    """One random-weight network per architecture for the module (strategies reset what trains)."""
    torch.manual_seed(0)
    return ARCHITECTURES[arch].builder()


def _trainable(model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _owner(model: torch.nn.Module, name: str) -> torch.nn.Module:
    return model.get_submodule(name.rpartition(".")[0])


@pytest.mark.parametrize("arch", ARCHS, ids=ARCHS)
def test_bitfit_trains_the_biases_and_the_head(arch: str) -> None:
    model, head = network(arch), ARCHITECTURES[arch].head
    groups = BitFit().param_groups(model, 0.1)
    # The reference: every parameter whose name contains "bias" (none of these networks has another such name
    # but Swin's relative_position_bias_table, which is not a bias vector) and the classifier.
    expected = {n for n, _ in model.named_parameters()
                if (n.endswith(".bias") and "relative_position" not in n) or n.startswith(head + ".")}
    assert _trainable(model) == expected
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for n, p in model.named_parameters() if n in expected}
    assert all(g["weight_decay"] == 0.0 for g in groups if g["name"] == "bitfit")


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "densenet121"], ids=["resnet18", "resnet50", "densenet121"])
def test_bitfit_on_bias_free_convolutions_is_lp_plus_batchnorm_biases(arch: str) -> None:
    model, head = network(arch), ARCHITECTURES[arch].head
    BitFit().param_groups(model, 0.1)
    backbone = {n for n in _trainable(model) if not n.startswith(head + ".")}
    assert backbone and all(isinstance(_owner(model, n), _BatchNorm) and n.endswith(".bias") for n in backbone)


@pytest.mark.parametrize("arch", ARCHS, ids=ARCHS)
def test_bitfit_norm_adds_every_normalisation_scale(arch: str) -> None:
    model, head = network(arch), ARCHITECTURES[arch].head
    strategy = BitFit(include_norm_weights=True)
    strategy.param_groups(model, 0.1)
    norms = (_BatchNorm, torch.nn.LayerNorm)
    expected = {n for n, _ in model.named_parameters()
                if n.endswith(".bias") or n.startswith(head + ".") or isinstance(_owner(model, n), norms)}
    assert _trainable(model) == expected
    assert strategy.display_name == "BitFit+norm" and BitFit().display_name == "BitFit"


def test_bitfit_keeps_statistics_of_batchnorms_whose_bias_trains(resnet: torch.nn.Module) -> None:
    before = snapshot(resnet)
    train_steps(resnet, BitFit(), steps=1)
    assert not torch.equal(before["bn1.running_mean"], resnet.state_dict()["bn1.running_mean"])
    assert torch.equal(before["bn1.weight"], resnet.bn1.weight.detach())
    assert torch.equal(before["conv1.weight"], resnet.conv1.weight.detach())


def test_bitfit_rejects_a_non_boolean_option() -> None:
    with pytest.raises(ConfigError, match="include_norm_weights must be true or false, got 'yes'"):
        BitFit(include_norm_weights="yes")  # type: ignore[arg-type]


# (arch, cut-off layer, prefixes of the parameters that train): written out by hand from each forward pass.
CUTS = {
    "resnet18-inside-block": ("resnet18", "layer3.0.conv1", ("layer3.1.", "layer4.", "fc.")),
    "resnet50-conv3": ("resnet50", "layer4.0.conv3", ("layer4.1.", "layer4.2.", "fc.")),
    "resnet50-container": ("resnet50", "layer3", ("layer4.", "fc.")),
    "densenet121-keras": ("densenet121", "conv5_block16_2_conv", ("features.norm5.", "classifier.")),
    "densenet121-inside-block": ("densenet121", "features.denseblock3.denselayer5.conv1",
                                 ("features.transition3.", "features.denseblock4.", "features.norm5.", "classifier.")),
    "vgg19-last-conv": ("vgg19", "features.34", ("classifier.",)),
    "vgg19-conv": ("vgg19", "features.28", ("features.30.", "features.32.", "features.34.", "classifier.")),
    "swin_t-inside-block": ("swin_t", "features.5.3.attn.qkv",
                            ("features.5.4.", "features.5.5.", "features.6.", "features.7.", "norm.", "head.")),
}


def _call_order(model: torch.nn.Module, size: int) -> dict[str, int]:
    """Position of each parameter's module in the order the forward pass calls it.

    A module whose weights are used functionally (Swin's ``attn.qkv``) is never called: its parameters take
    the position of the closest called module above them.
    """
    order: dict[str, int] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, inputs: object) -> None:  # returns None: the input passes unchanged
            order.setdefault(name, len(order))
        return hook

    handles = [module.register_forward_pre_hook(record(name))
               for name, module in model.named_modules() if name and any(True for _ in module.parameters())]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size))
    finally:
        for handle in handles:
            handle.remove()
    positions = {}
    for param in (n for n, _ in model.named_parameters()):
        owner = param.rpartition(".")[0]
        while owner not in order:
            owner = owner.rpartition(".")[0]
        positions[param] = order[owner]
    return positions


@pytest.mark.parametrize("case", sorted(CUTS), ids=sorted(CUTS))
def test_cutoff_boundary_follows_the_forward_pass(case: str) -> None:
    arch, layer, trained = CUTS[case]
    model = network(arch)
    CutoffLayer(layer).param_groups(model, 0.1)
    assert _trainable(model) == {n for n, _ in model.named_parameters() if n.startswith(trained)}
    # Every frozen module runs before every trained one, and the frozen part is a prefix the rest reads alone.
    order = _call_order(model, 64 if arch == "swin_t" else 32)
    frozen = [order[n] for n, p in model.named_parameters() if not p.requires_grad]
    assert max(frozen) < min(order[n] for n, p in model.named_parameters() if p.requires_grad)
    # The cached path freezes the same parameters: its trunk holds exactly the frozen ones (a cut inside a block
    # would raise here).
    trunk = {id(p) for p in FrozenFeatureCache(model, CutoffLayer(layer)).trunk.parameters()}
    assert trunk == {id(p) for p in model.parameters() if not p.requires_grad}


def test_cutoff_block_holds_the_whole_bottleneck_and_its_statistics() -> None:
    torch.manual_seed(0)
    model = ARCHITECTURES["resnet18"].builder()
    before = snapshot(model)
    train_steps(model, CutoffLayer("layer4.0.conv2"))
    for key in ("layer4.0.bn2.running_var", "layer4.0.downsample.1.running_mean", "layer4.0.downsample.0.weight"):
        assert torch.equal(before[key], model.state_dict()[key]), key
    assert not torch.equal(before["layer4.1.bn1.running_mean"], model.state_dict()["layer4.1.bn1.running_mean"])


def test_cutoff_layer_boundary_keeps_the_earlier_registration_order_rule() -> None:
    model = network("resnet50")
    CutoffLayer("layer4.0.conv3", boundary="layer").param_groups(model, 0.1)
    names = [n for n, _ in model.named_parameters()]
    last = names.index("layer4.0.conv3.weight")
    assert _trainable(model) == set(names[last + 1:])
    assert {"layer4.0.bn3.weight", "layer4.0.downsample.0.weight"} <= _trainable(model)
    with pytest.raises(ConfigError, match="not a sequential boundary"):
        FrozenFeatureCache(model, CutoffLayer("layer4.0.conv3", boundary="layer"))


def test_cutoff_unknown_boundary_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown cut-off boundary 'module'; choose from: block, layer"):
        CutoffLayer("layer3", boundary="module")
