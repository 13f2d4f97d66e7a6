"""Auto-RGN: learning rates equal the formula on fixed batches; BN excluded; model left untouched."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from monai.engines import default_prepare_batch
from monai.inferers import SimpleInferer

from common.errors import ConfigError
from common.finetune import AutoRGN
from tests.finetune.conftest import snapshot


def _engine(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: list[dict]) -> SimpleNamespace:
    return SimpleNamespace(network=model, optimizer=optimizer, data_loader=batches, prepare_batch=default_prepare_batch,
                           inferer=SimpleInferer(), loss_function=torch.nn.CrossEntropyLoss(), non_blocking=False,
                           state=SimpleNamespace(epoch=1, device=torch.device("cpu")))


def test_lrs_follow_the_relative_gradient_norm_formula(resnet: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    batches = [{"image": torch.randn(4, 3, 32, 32, generator=gen), "label": torch.tensor([0, 1, 2, 0])}
               for _ in range(3)]
    strategy = AutoRGN(n_batches=2)
    optimizer = torch.optim.Adam(strategy.param_groups(resnet, 0.01), lr=0.01)
    before = snapshot(resnet)
    # Expected: mean gradient over the first two batches, computed independently.
    resnet.train()
    resnet.zero_grad()
    for batch in batches[:2]:
        (torch.nn.functional.cross_entropy(resnet(batch["image"]), batch["label"]) / 2).backward()
    rgn = {n: float(p.grad.norm() / p.detach().norm()) for n, p in resnet.named_parameters() if "bn" not in n
           and "downsample.1" not in n}
    resnet.zero_grad(set_to_none=True)
    resnet.load_state_dict(before)
    strategy.on_epoch_start(_engine(resnet, optimizer, batches))
    top = max(rgn.values())
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    for name, value in rgn.items():
        assert lrs[name] == pytest.approx(value / top * 0.01, rel=1e-4), name
    assert lrs["batchnorm"] == 0.01
    assert max(lrs[n] for n in rgn) == pytest.approx(0.01)
    after = resnet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats restored, weights untouched
    assert all(p.grad is None for p in resnet.parameters())


def test_non_finite_batches_are_skipped(resnet: torch.nn.Module) -> None:
    bad = {"image": torch.full((2, 3, 32, 32), float("nan")), "label": torch.tensor([0, 1])}
    good = {"image": torch.randn(2, 3, 32, 32), "label": torch.tensor([0, 1])}
    strategy = AutoRGN(n_batches=2)
    optimizer = torch.optim.SGD(strategy.param_groups(resnet, 0.1), lr=0.1)
    strategy.on_epoch_start(_engine(resnet, optimizer, [bad, good]))
    assert strategy.last_lrs and all(0 <= v <= 0.1 + 1e-12 for v in strategy.last_lrs.values())


def test_bad_n_batches() -> None:
    with pytest.raises(ConfigError, match="n_batches must be >= 1"):
        AutoRGN(n_batches=0)
