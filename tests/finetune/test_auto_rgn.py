"""Auto-RGN: learning rates equal the reference formula on fixed batches; BN frozen; the head; the data order."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from monai.engines import default_prepare_batch
from monai.inferers import SimpleInferer
from torch.utils.data import DataLoader

from common.errors import ConfigError
from common.finetune import AutoRGN
from tests.finetune.conftest import snapshot


def _engine(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: object, epoch: int = 1
            ) -> SimpleNamespace:
    return SimpleNamespace(network=model, optimizer=optimizer, data_loader=batches, prepare_batch=default_prepare_batch,
                           inferer=SimpleInferer(), loss_function=torch.nn.CrossEntropyLoss(), non_blocking=False,
                           state=SimpleNamespace(epoch=epoch, device=torch.device("cpu")))


def _batches(count: int, size: int = 4) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [{"image": torch.randn(size, 3, 32, 32, generator=gen), "label": torch.randint(0, 3, (size,), generator=gen)}
            for _ in range(count)]


def _is_bn(name: str) -> bool:
    return "bn" in name or "downsample.1" in name  # torchvision resnet18's BatchNorm parameters


def _reference_rgn(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """The reference's statistic, recomputed apart: whole network in eval mode, per-batch ratios averaged."""
    model = copy.deepcopy(model).eval()
    names = [n for n, _ in model.named_parameters() if not _is_bn(n)]
    ratios: dict[str, list[float]] = {n: [] for n in names}
    for batch in batches:
        loss = torch.nn.functional.cross_entropy(model(batch["image"]), batch["label"])
        grads = torch.autograd.grad(loss, list(model.parameters()))
        for (name, param), grad in zip(model.named_parameters(), grads, strict=True):
            if name in ratios:
                ratios[name].append(grad.norm().item() / param.norm().item())
    return {n: sum(r) / len(r) for n, r in ratios.items()}


@pytest.mark.parametrize("head", ["base_lr", "rgn"], ids=["head-excluded", "head-in-max"])
def test_reference_lrs_equal_the_mean_of_per_batch_ratios(resnet: torch.nn.Module, head: str) -> None:
    batches = _batches(3)
    expected = _reference_rgn(resnet, batches[:2])
    strategy = AutoRGN(n_batches=2, head=head)
    optimizer = torch.optim.Adam(strategy.param_groups(resnet, 0.01), lr=0.01)
    before = snapshot(resnet)
    strategy.on_epoch_start(_engine(resnet, optimizer, batches))
    ruled = {n: r for n, r in expected.items() if head == "rgn" or not n.startswith("fc.")}
    top = max(ruled.values())
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert set(lrs) == set(expected)  # one group per non-BN tensor; BatchNorm is not in the optimizer
    for name, value in ruled.items():
        assert lrs[name] == pytest.approx(value / top * 0.01, rel=1e-4), name
    if head == "base_lr":
        assert lrs["fc.weight"] == lrs["fc.bias"] == 0.01
        assert expected["fc.weight"] > top  # the fresh head would have set the normaliser
    after = resnet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in resnet.parameters())


def test_reference_statistic_is_not_the_norm_of_the_mean_gradient(resnet: torch.nn.Module) -> None:
    batches = _batches(2)
    mean_ratio = _reference_rgn(resnet, batches)
    model = copy.deepcopy(resnet).eval()
    loss = sum(torch.nn.functional.cross_entropy(model(b["image"]), b["label"]) for b in batches) / 2
    grads = torch.autograd.grad(loss, [p for n, p in model.named_parameters() if not _is_bn(n)])
    of_mean = {n: g.norm().item() / p.norm().item()
               for (n, p), g in zip([(n, p) for n, p in model.named_parameters() if not _is_bn(n)], grads, strict=True)}
    strategy = AutoRGN(n_batches=2, head="rgn")
    optimizer = torch.optim.Adam(strategy.param_groups(resnet, 1.0), lr=1.0)
    strategy.on_epoch_start(_engine(resnet, optimizer, batches))
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    # ||mean g|| <= mean ||g|| (triangle inequality), strictly for gradients that differ between batches.
    assert mean_ratio["conv1.weight"] > of_mean["conv1.weight"] * 1.01
    assert lrs["conv1.weight"] == pytest.approx(mean_ratio["conv1.weight"] / max(mean_ratio.values()), rel=1e-4)
    assert lrs["conv1.weight"] != pytest.approx(of_mean["conv1.weight"] / max(of_mean.values()), rel=1e-2)


def test_batchnorm_is_not_trained_and_keeps_its_statistics(resnet: torch.nn.Module) -> None:
    batches = _batches(3)
    strategy = AutoRGN(n_batches=2)
    optimizer = torch.optim.SGD(strategy.param_groups(resnet, 0.1), lr=0.1)
    before = snapshot(resnet)
    strategy.on_epoch_start(_engine(resnet, optimizer, batches))
    for batch in batches:
        resnet.train()  # as MONAI's SupervisedTrainer does every iteration
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(resnet(batch["image"]), batch["label"]).backward()
        optimizer.step()
    after = resnet.state_dict()
    bn_keys = [k for k in before if _is_bn(k)]
    assert bn_keys and all(torch.equal(before[k], after[k]) for k in bn_keys)  # affine and running statistics
    assert not torch.equal(before["conv1.weight"], after["conv1.weight"])


def test_mean_gradient_variant_is_the_earlier_behaviour(resnet: torch.nn.Module) -> None:
    batches = _batches(3)
    strategy = AutoRGN(n_batches=2, variant="mean_gradient", head="rgn")
    optimizer = torch.optim.Adam(strategy.param_groups(resnet, 0.01), lr=0.01)
    before = snapshot(resnet)
    resnet.train()
    for batch in batches[:2]:
        (torch.nn.functional.cross_entropy(resnet(batch["image"]), batch["label"]) / 2).backward()
    rgn = {n: float(p.grad.norm() / p.detach().norm()) for n, p in resnet.named_parameters() if not _is_bn(n)}
    resnet.zero_grad(set_to_none=True)
    resnet.load_state_dict(before)
    strategy.on_epoch_start(_engine(resnet, optimizer, batches))
    top = max(rgn.values())
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    for name, value in rgn.items():
        assert lrs[name] == pytest.approx(value / top * 0.01, rel=1e-4), name
    assert lrs["batchnorm"] == 0.01
    after = resnet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats restored


class _Images(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(index)
        return {"image": torch.randn(3, 32, 32, generator=gen), "label": torch.tensor(index % 3), "index": index}


def _epoch_order(loader: DataLoader) -> list[int]:
    return [int(i) for batch in loader for i in batch["index"]]


def test_measurement_leaves_the_training_data_order_alone(resnet: torch.nn.Module) -> None:
    loader = DataLoader(_Images(), batch_size=4, shuffle=True)
    torch.manual_seed(7)
    plain = [_epoch_order(loader) for _ in range(2)]
    strategy = AutoRGN(n_batches=2, seed=3)
    optimizer = torch.optim.SGD(strategy.param_groups(resnet, 0.1), lr=0.1)
    torch.manual_seed(7)
    paired = []
    for epoch in (1, 2):
        strategy.on_epoch_start(_engine(resnet, optimizer, loader, epoch))
        paired.append(_epoch_order(loader))
    assert paired == plain


def test_measurement_batches_depend_on_seed_and_epoch_only(resnet: torch.nn.Module) -> None:
    from common.finetune.strategies.auto_rgn import measurement_batches

    loader = DataLoader(_Images(), batch_size=4, shuffle=True)

    def indices(seed: int) -> list[int]:
        batches = measurement_batches(loader, 2, torch.Generator().manual_seed(seed))
        return [int(i) for b in batches for i in b["index"]]

    torch.manual_seed(0)
    first = indices(5)
    torch.manual_seed(1)
    assert indices(5) == first and len(first) == 8
    assert indices(6) != first


def test_measurement_draws_with_a_copy_of_the_training_sampler() -> None:
    from torch.utils.data import WeightedRandomSampler

    from common.finetune.strategies.auto_rgn import measurement_batches

    weights = [1.0 if i % 4 == 0 else 0.0 for i in range(16)]  # only indices 0, 4, 8, 12 can be drawn
    sampler = WeightedRandomSampler(weights, num_samples=16)
    loader = DataLoader(_Images(), batch_size=4, sampler=sampler)
    drawn = {int(i) for b in measurement_batches(loader, 2, torch.Generator().manual_seed(0)) for i in b["index"]}
    assert drawn <= {0, 4, 8, 12} and sampler.generator is None  # the training sampler is not changed


def test_non_finite_batches_are_skipped(resnet: torch.nn.Module) -> None:
    bad = {"image": torch.full((2, 3, 32, 32), float("nan")), "label": torch.tensor([0, 1])}
    good = {"image": torch.randn(2, 3, 32, 32), "label": torch.tensor([0, 1])}
    strategy = AutoRGN(n_batches=2)
    optimizer = torch.optim.SGD(strategy.param_groups(resnet, 0.1), lr=0.1)
    strategy.on_epoch_start(_engine(resnet, optimizer, [bad, good]))
    assert strategy.last_lrs and all(0 <= v <= 0.1 + 1e-12 for v in strategy.last_lrs.values())


def test_resume_keeps_batchnorm_frozen(resnet: torch.nn.Module) -> None:
    strategy = AutoRGN()
    strategy.param_groups(resnet, 0.1)
    state = strategy.state_dict(resnet)
    fresh = copy.deepcopy(resnet)
    for p in fresh.parameters():
        p.requires_grad_(True)
    AutoRGN().load_state_dict(state, fresh)
    assert {n for n, p in fresh.named_parameters() if not p.requires_grad} == {
        n for n, _ in resnet.named_parameters() if _is_bn(n)}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_batches": 0}, "n_batches must be >= 1"),
    ({"variant": "mean"}, "unknown AutoRGN variant 'mean'; choose from: reference, mean_gradient"),
    ({"head": "exclude"}, "unknown AutoRGN head 'exclude'; choose from: base_lr, rgn"),
], ids=["n_batches", "variant", "head"])
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AutoRGN(**kwargs)


def test_measurement_leaves_the_augmentations_alone(resnet: torch.nn.Module) -> None:
    from monai.data import Dataset
    from monai.transforms import RandGaussianNoised

    gen = torch.Generator().manual_seed(0)
    data = [{"image": torch.randn(3, 32, 32, generator=gen), "label": torch.tensor(i % 3)} for i in range(8)]
    dataset = Dataset(data, transform=RandGaussianNoised(keys="image", prob=1.0))
    loader = DataLoader(dataset, batch_size=4)  # main process: the augmentation draws from the transform's own RNG
    dataset.transform.set_random_state(seed=0)  # the dataset holds its own copy of the transform
    plain = torch.cat([b["image"] for b in loader])
    dataset.transform.set_random_state(seed=0)
    strategy = AutoRGN(n_batches=2)
    optimizer = torch.optim.SGD(strategy.param_groups(resnet, 0.1), lr=0.1)
    strategy.on_epoch_start(_engine(resnet, optimizer, loader))
    assert torch.equal(torch.cat([b["image"] for b in loader]), plain)
