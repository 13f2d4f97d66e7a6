"""L2-SP / L1-SP penalties: zero at the start, equal to the hand-computed value after a perturbation."""

from __future__ import annotations

import pytest
import torch

from common.errors import ConfigError
from common.finetune import L1SP, L2SP


@pytest.mark.parametrize("cls", [L2SP, L1SP], ids=["l2_sp", "l1_sp"])
def test_penalty_is_head_only_at_start(resnet: torch.nn.Module, cls: type) -> None:
    strategy = cls(alpha=0.3, beta=0.2)
    groups = strategy.param_groups(resnet, 0.1, weight_decay=0.05)
    assert all(g["weight_decay"] == 0.0 for g in groups)  # no double penalty
    head = 0.2 / 2 * (resnet.fc.weight.pow(2).sum() + resnet.fc.bias.pow(2).sum())
    assert torch.allclose(strategy.penalty(resnet), head)


@pytest.mark.parametrize(("cls", "expected"), [(L2SP, 0.3 / 2 * 4 * 0.25), (L1SP, 0.3 * 4 * 0.5)],
                         ids=["l2_sp", "l1_sp"])
def test_penalty_after_known_perturbation(resnet: torch.nn.Module, cls: type, expected: float) -> None:
    strategy = cls(alpha=0.3, beta=0.0)
    strategy.param_groups(resnet, 0.1)
    with torch.no_grad():
        resnet.conv1.weight.view(-1)[:4] += 0.5  # four weights moved by 0.5
    assert strategy.penalty(resnet).item() == pytest.approx(expected, rel=1e-6)


def test_negative_strength_is_refused() -> None:
    with pytest.raises(ConfigError, match="alpha and beta must be >= 0"):
        L2SP(alpha=-1)


def test_untransferred_tensors_get_plain_l2_not_a_pull_to_random_values(resnet: torch.nn.Module) -> None:
    from common.networks import TransferReport

    report = TransferReport(source="encoder.pt", loaded=["conv1.weight"])
    strategy = L2SP(alpha=0.3, beta=0.2, transfer_report=report)
    strategy.param_groups(resnet, 0.1)
    with torch.no_grad():
        resnet.conv1.weight.view(-1)[:4] += 0.5
    new = [p for n, p in resnet.named_parameters() if n != "conv1.weight"]
    expected = 0.3 / 2 * 4 * 0.25 + 0.2 / 2 * sum(float(p.pow(2).sum()) for p in new)
    assert strategy.penalty(resnet).item() == pytest.approx(expected, rel=1e-5)
