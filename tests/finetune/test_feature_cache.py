"""Feature caching for LP / cut-off: exact features, head-only training, full checkpoints, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedTrainer
from monai.transforms import Compose, EnsureTyped, OneOf, RandFlipd, RandGaussianNoised, ScaleIntensityd

from common.errors import ConfigError
from common.finetune import FT, LP, CutoffLayer, FinetuneHandler
from common.finetune.feature_cache import CachedFeatureDataset, FrozenFeatureCache, random_transforms
from common.networks import build_classifier
from tests.finetune.conftest import snapshot

N_CLASSES = 3


def tiny_dataset(transform: Compose | None = None, n: int = 8) -> Dataset:
    """``n`` noise images of 3 x 32 x 32 with 3 binary findings, a deterministic transform by default."""
    rng = np.random.default_rng(0)
    items = [{"image": rng.standard_normal((3, 32, 32)).astype(np.float32),
              "label": (rng.random(N_CLASSES) < 0.5).astype(np.float32)} for _ in range(n)]
    return Dataset(items, transform or Compose([EnsureTyped(keys=["image", "label"], dtype=torch.float32)]))


def small_densenet() -> torch.nn.Module:
    """torchvision's DenseNet class with 2 layers per block: DenseNet-121's layout, a fraction of its cost."""
    return torchvision.models.DenseNet(growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16,
                                       num_classes=N_CLASSES)


CASES = {
    "lp-resnet18": (lambda: build_classifier("resnet18", N_CLASSES), LP, {"fc.weight", "fc.bias"}),
    # The last conv of the last dense block, like DenseNet-121's conv5_block16_2_conv: norm5 + classifier train.
    "cutoff-densenet": (small_densenet, lambda: CutoffLayer("features.denseblock4.denselayer2.conv2"),
                        {"classifier.weight", "classifier.bias", "features.norm5.weight", "features.norm5.bias",
                         "features.norm5.running_mean", "features.norm5.running_var",
                         "features.norm5.num_batches_tracked"}),
}


def prepared(case: str) -> tuple[torch.nn.Module, FrozenFeatureCache, torch.optim.Optimizer, set[str]]:
    """A classifier, its strategy's optimizer (which freezes the trunk) and the feature cache."""
    build, make_strategy, trained = CASES[case]
    torch.manual_seed(0)
    network = build()
    strategy = make_strategy()
    optimizer = torch.optim.SGD(strategy.param_groups(network, 0.1), lr=0.1)
    return network, FrozenFeatureCache(network, strategy), optimizer, trained


@pytest.mark.parametrize("case", sorted(CASES))
def test_cached_features_equal_the_trunk_output_bit_for_bit(case: str) -> None:
    network, cache, _, _ = prepared(case)
    data = CachedFeatureDataset(tiny_dataset(), cache, batch_size=8)
    data.build()
    images = torch.stack([item["image"] for item in data.dataset]).as_tensor()
    network.train()  # the cache must switch to eval by itself and restore the mode
    with torch.no_grad():
        expected = cache.trunk.eval()(images)
        network.train()
        data.features = None
        data.build()
        assert torch.equal(data.features, expected)
        assert network.training and cache.top.training
        assert torch.equal(cache.top.eval()(data.features), network.eval()(images))
    assert torch.equal(data.labels, torch.stack([torch.as_tensor(item["label"]) for item in data.dataset]))


@pytest.mark.parametrize("case", sorted(CASES))
def test_training_on_the_cache_changes_only_the_top(case: str, tmp_path: Path) -> None:
    network, cache, optimizer, trained = prepared(case)
    before = snapshot(network)
    loader = DataLoader(CachedFeatureDataset(tiny_dataset(), cache, batch_size=4), batch_size=4, shuffle=True)
    trainer = SupervisedTrainer(device=torch.device("cpu"), max_epochs=2, train_data_loader=loader,
                                network=cache.trainer_network, optimizer=optimizer,
                                loss_function=torch.nn.BCEWithLogitsLoss(),
                                train_handlers=[FinetuneHandler(LP())])
    trainer.run()
    changed = {k for k, v in network.state_dict().items() if not torch.equal(before[k], v)}
    assert changed == trained  # trunk weights and BatchNorm statistics bit-identical

    # The full network's state dict (what the bundle's CheckpointSaver writes) loads strictly.
    torch.save(network.state_dict(), tmp_path / "model.pt")
    fresh = CASES[case][0]()
    fresh.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), network.eval()(x))


@pytest.mark.parametrize(
    ("transform", "names"),
    [(Compose([ScaleIntensityd("image"), RandFlipd("image", prob=0.5)]), "RandFlipd"),
     (Compose([Compose([RandGaussianNoised("image", prob=0.1)])]), "RandGaussianNoised"),
     (Compose([OneOf([ScaleIntensityd("image"), EnsureTyped("image")])]), "OneOf")],
    ids=["rand-flip", "nested-compose", "one-of"],
)
def test_random_augmentation_is_refused(transform: Compose, names: str) -> None:
    network = build_classifier("resnet18", N_CLASSES)
    assert random_transforms(transform) == [names]
    with pytest.raises(ConfigError, match=rf"training transforms are random \({names}\).*\"augmentation\": \[\]"):
        CachedFeatureDataset(tiny_dataset(transform), FrozenFeatureCache(network, LP()))


def test_disabled_cache_passes_images_through_and_allows_augmentation() -> None:
    network = build_classifier("resnet18", N_CLASSES)
    cache = FrozenFeatureCache(network, FT(), enabled=False)  # any strategy when off
    data = CachedFeatureDataset(tiny_dataset(Compose([RandFlipd("image", prob=1.0, spatial_axis=1)])), cache)
    assert cache.trainer_network is network
    assert data[0]["image"].shape == (3, 32, 32)
    with pytest.raises(ConfigError, match="no trunk/top split"):
        _ = cache.trunk


@pytest.mark.parametrize(
    ("arch", "strategy", "match"),
    [("resnet18", FT(), "supports the LP and CutoffLayer strategies.*finetune is FT"),
     ("resnet18", CutoffLayer("layer3.0.conv1", boundary="layer"),
      r"inside 'layer3.0'.*Cut after layer3\.0 or layer2\.1 instead"),
     ("densenet", CutoffLayer("features.denseblock4.denselayer1.conv2", boundary="layer"),
      r"inside 'features.denseblock4'.*Cut after features\.denseblock4 or features\.transition3\.conv instead")],
    ids=["ft", "cutoff-inside-resnet-block", "cutoff-inside-dense-block"],
)
def test_unsupported_splits_are_refused(arch: str, strategy: object, match: str) -> None:
    network = small_densenet() if arch == "densenet" else build_classifier(arch, N_CLASSES)
    with pytest.raises(ConfigError, match=match):
        FrozenFeatureCache(network, strategy)


def test_a_trainable_trunk_is_refused_when_caching_starts() -> None:
    network = build_classifier("resnet18", N_CLASSES)  # param_groups never ran: nothing is frozen
    data = CachedFeatureDataset(tiny_dataset(), FrozenFeatureCache(network, LP()))
    with pytest.raises(ConfigError, match=r"60 parameters inside the cached trunk require grad, e.g. \['conv1.weight'"):
        data[0]


def test_ddp_wrapped_network_is_refused() -> None:
    class FakeDDP(torch.nn.parallel.DistributedDataParallel):
        def __init__(self) -> None:  # no process group needed to test the type check
            torch.nn.Module.__init__(self)

    with pytest.raises(ConfigError, match="cannot be combined with the multi-GPU overlay"):
        FrozenFeatureCache(FakeDDP(), LP())
