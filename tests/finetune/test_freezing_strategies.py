"""Exact invariants of the freezing strategies: LP, Surgical, BitFit, CutoffLayer."""

from __future__ import annotations

import pytest
import torch

from common.errors import ConfigError
from common.finetune import LP, BitFit, CutoffLayer, Surgical
from tests.finetune.conftest import snapshot, train_steps


def _changed(before: dict[str, torch.Tensor], model: torch.nn.Module) -> set[str]:
    return {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}


def test_lp_trains_only_the_head_and_keeps_bn_statistics(resnet: torch.nn.Module) -> None:
    before = snapshot(resnet)
    train_steps(resnet, LP())
    changed = _changed(before, resnet)
    assert changed == {"fc.weight", "fc.bias"}  # running_mean / running_var / num_batches_tracked unchanged
    assert torch.equal(before["bn1.running_mean"], resnet.state_dict()["bn1.running_mean"])


def test_surgical_trains_the_named_block_and_head(resnet: torch.nn.Module) -> None:
    before = snapshot(resnet)
    optimizer = train_steps(resnet, Surgical(["block1"]))
    changed = _changed(before, resnet)
    assert changed and all(k.startswith(("layer1.", "fc.")) for k in changed)
    assert any(k.startswith("layer1.") and "running_mean" in k for k in changed)  # trained block's BN updates
    assert [g["name"] for g in optimizer.param_groups] == ["block1", "head"]


def test_surgical_unknown_group_lists_the_valid_ones(resnet: torch.nn.Module) -> None:
    with pytest.raises(ConfigError, match="unknown layer group.*'layer9'.*choose from: stem, block1"):
        Surgical(["layer9"]).param_groups(resnet, 0.1)


def test_bitfit_norm_trainable_set_is_biases_norms_and_head(resnet: torch.nn.Module) -> None:
    optimizer = train_steps(resnet, BitFit(include_norm_weights=True), steps=1)
    trainable = {n for n, p in resnet.named_parameters() if p.requires_grad}
    expected = {n for n, _ in resnet.named_parameters() if "bn" in n or "downsample.1" in n or n.startswith("fc.")}
    assert trainable == expected
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == sum(
        p.numel() for n, p in resnet.named_parameters() if n in expected)


def test_bitfit_trainable_set_is_biases_and_head(resnet: torch.nn.Module) -> None:
    train_steps(resnet, BitFit(), steps=1)
    trainable = {n for n, p in resnet.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in resnet.named_parameters() if n.endswith(".bias") or n.startswith("fc.")}


def test_cutoff_freezes_up_to_and_including_the_layer(resnet: torch.nn.Module) -> None:
    before = snapshot(resnet)
    train_steps(resnet, CutoffLayer("layer3"))
    for name, param in resnet.named_parameters():
        frozen = not name.startswith(("layer4.", "fc."))
        assert param.requires_grad is not frozen, name
        assert torch.equal(before[name], param.detach()) is frozen, name
    assert torch.equal(before["layer3.1.bn2.running_var"], resnet.state_dict()["layer3.1.bn2.running_var"])


def test_cutoff_keras_alias_maps_to_torchvision_densenet() -> None:
    assert CutoffLayer("conv5_block16_2_conv").layer == "features.denseblock4.denselayer16.conv2"


def test_cutoff_unknown_layer_suggests_names(resnet: torch.nn.Module) -> None:
    with pytest.raises(ConfigError, match="did you mean: layer3"):
        CutoffLayer("layer3x").param_groups(resnet, 0.1)
