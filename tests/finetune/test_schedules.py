"""LP-FT switch, gradual unfreezing in both orders, discriminative learning rates."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from common.errors import ConfigError
from common.finetune import LPFT, DiscriminativeLR, GradualUnfreezing, set_group_lrs


def _engine(epoch: int, optimizer: torch.optim.Optimizer) -> SimpleNamespace:
    return SimpleNamespace(state=SimpleNamespace(epoch=epoch), optimizer=optimizer)


def test_lp_ft_switches_after_lp_epochs_with_scaled_lr(resnet: torch.nn.Module) -> None:
    strategy = LPFT(lp_epochs=2, ft_lr_scale=0.1)
    optimizer = torch.optim.SGD(strategy.param_groups(resnet, 1.0), lr=1.0)
    for epoch in (1, 2):
        strategy.on_epoch_start(_engine(epoch, optimizer))
        assert {n for n, p in resnet.named_parameters() if p.requires_grad} == {"fc.weight", "fc.bias"}
        assert [g["lr"] for g in optimizer.param_groups] == [1.0] * 6
    strategy.on_epoch_start(_engine(3, optimizer))
    assert all(p.requires_grad for p in resnet.parameters())
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.1] * 6)


@pytest.mark.parametrize("hold", [False, True])
def test_lp_ft_fine_tuning_phase_updates_or_holds_batchnorm_statistics(resnet: torch.nn.Module, hold: bool) -> None:
    strategy = LPFT(lp_epochs=1, ft_lr_scale=0.1, hold_bn_stats=hold)
    optimizer = torch.optim.SGD(strategy.param_groups(resnet, 0.01), lr=0.01)
    strategy.on_epoch_start(_engine(2, optimizer))
    before = resnet.bn1.running_mean.clone()
    resnet.train()
    loss = resnet(torch.randn(4, 3, 64, 64)).sum()
    loss.backward()
    optimizer.step()
    assert torch.equal(resnet.bn1.running_mean, before) == hold
    assert resnet.bn1.weight.requires_grad and resnet.bn1.weight.grad is not None  # affine trains either way


def test_lp_ft_keeps_the_scheduler_progress(resnet: torch.nn.Module) -> None:
    strategy = LPFT(lp_epochs=1, ft_lr_scale=0.5)
    optimizer = torch.optim.SGD(strategy.param_groups(resnet, 1.0), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    strategy.lr_scheduler = scheduler
    optimizer.step()
    scheduler.step()  # epoch 1 ends: lr 0.5
    strategy.on_epoch_start(_engine(2, optimizer))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.25)  # 0.5 base x 0.5 schedule factor
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.125)


@pytest.mark.parametrize(
    ("order", "expected"),
    [("last_to_first", {1: ["head"], 2: ["head"], 3: ["head", "block4"], 5: ["head", "block4", "block3"]}),
     ("first_to_last", {1: ["head"], 3: ["head", "stem"], 5: ["head", "stem", "block1"]})],
    ids=["last_to_first", "first_to_last"],
)
def test_gradual_unfreezing_schedule(resnet: torch.nn.Module, order: str, expected: dict[int, list[str]]) -> None:
    strategy = GradualUnfreezing(every_n_epochs=2, order=order)
    optimizer = torch.optim.SGD(strategy.param_groups(resnet, 0.1), lr=0.1)
    prefixes = {"stem": ("conv1.", "bn1."), "head": ("fc.",), **{f"block{i}": (f"layer{i}.",) for i in range(1, 5)}}
    for epoch, groups in expected.items():
        strategy.on_epoch_start(_engine(epoch, optimizer))
        allowed = tuple(p for g in groups for p in prefixes[g])
        trainable = {n for n, p in resnet.named_parameters() if p.requires_grad}
        assert trainable == {n for n, _ in resnet.named_parameters() if n.startswith(allowed)}, epoch


def test_gradual_unknown_order() -> None:
    with pytest.raises(ConfigError, match="unknown unfreezing order 'random'; choose from: last_to_first"):
        GradualUnfreezing(order="random")


def test_gradual_unfreezing_with_discriminative_rates(resnet: torch.nn.Module) -> None:
    """ULMFiT's combination: the unfreezing schedule unchanged, each group at base_lr / 2.6**k from the top."""
    plain = GradualUnfreezing(every_n_epochs=1).param_groups(resnet, 1.0)
    assert {g["lr"] for g in plain} == {1.0}
    strategy = GradualUnfreezing(every_n_epochs=1, discriminative=True)
    groups = strategy.param_groups(resnet, 1.0)
    names = ["stem", "block1", "block2", "block3", "block4", "head"]
    assert [g["name"] for g in groups] == names
    for k, group in enumerate(reversed(groups)):
        assert group["lr"] == pytest.approx(2.6**-k)
    optimizer = torch.optim.SGD(groups, lr=1.0)
    strategy.on_epoch_start(_engine(2, optimizer))
    assert {n for n, p in resnet.named_parameters() if p.requires_grad} == {
        n for n, _ in resnet.named_parameters() if n.startswith(("fc.", "layer4."))}
    with pytest.raises(ConfigError, match="GradualUnfreezing decay must be in"):
        GradualUnfreezing(discriminative=True, decay=0.0)


def test_discriminative_lrs_decay_from_the_top(resnet: torch.nn.Module) -> None:
    groups = DiscriminativeLR(decay=0.5).param_groups(resnet, 1.0)
    assert [(g["name"], g["lr"]) for g in groups] == [("stem", 0.5**5), ("block1", 0.5**4), ("block2", 0.5**3),
                                                      ("block3", 0.25), ("block4", 0.5), ("head", 1.0)]


def test_set_group_lrs_without_scheduler(resnet: torch.nn.Module) -> None:
    optimizer = torch.optim.SGD([{"name": "a", "params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1.0}], lr=1.0)
    set_group_lrs(optimizer, {"a": 0.3})
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.3)
