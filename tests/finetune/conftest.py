"""Tiny models and a minimal trainer loop that behaves like MONAI's SupervisedTrainer."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torchvision

from common.finetune import FinetuneStrategy


@pytest.fixture()
def resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=3)


def train_steps(model: torch.nn.Module, strategy: FinetuneStrategy, steps: int = 2, lr: float = 0.1,
                epoch: int = 1) -> torch.optim.Optimizer:
    """Build groups + SGD, then run ``steps`` iterations calling ``model.train()`` each time as MONAI does."""
    optimizer = torch.optim.SGD(strategy.param_groups(model, lr), lr=lr)
    strategy.on_epoch_start(SimpleNamespace(state=SimpleNamespace(epoch=epoch), optimizer=optimizer))
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        model.train()
        x = torch.randn(4, 3, 32, 32, generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0]))
        extra = strategy.penalty(model)
        if extra is not None:
            loss = loss + extra
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return optimizer


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
