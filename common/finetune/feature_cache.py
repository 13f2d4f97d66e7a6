"""Feature caching for LP and cut-off training: run the frozen trunk once per image, train the top on the cache.

With linear probing or cut-off feature extraction the frozen part of the network computes the same
features for an image in every epoch, as long as no random augmentation precedes it. Caching them
turns every epoch after the first into training a small top on stored tensors (Kornblith et al. 2019,
"Do Better ImageNet Models Transfer Better?", train their logistic-regression probes on fixed
features the same way).

How it plugs into a bundle (``configs/finetune/lp_cached.json``, ``cutoff_cached.json``):

* :class:`FrozenFeatureCache` cuts ``@network`` at a sequential boundary (a cut-off layer's whole forward-pass block
  is frozen with it by default, so every layer gives one)
  (:func:`common.networks.sequential.split_sequential`) into a frozen ``trunk`` and a trainable ``top``
  that share the network's modules. The trainer gets ``trainer_network`` (the top), so
  ``CheckpointSaver`` on ``@network`` still writes the FULL state dict, with the trained head, that
  evaluate.json and inference.json load unchanged. Validation keeps running images through ``@network``.
* :class:`CachedFeatureDataset` wraps ``@train#dataset``; when training starts (first item asked for,
  so after ``initialize`` loaded the pretrained weights and the strategy froze the trunk) it runs the
  trunk over every image once (batched, ``no_grad``, eval mode, on the network's device) and then
  serves ``{"image": features, "label": label}``.

Policy on random augmentation: refuse. Features cached once would freeze one random draw of each
augmentation for the whole run, so a wrapped dataset whose transform holds any MONAI randomizable
transform raises :class:`common.errors.ConfigError` naming them; the overlays set ``"augmentation": []``.

Differences from the uncached run, by design: the trunk runs in eval mode, so dropout and stochastic
depth inside the frozen part are off (``SupervisedTrainer`` calls ``network.train()``, which turns them on
in the uncached run); dropout right before the head stays in the top and still trains as usual. The
cache lives in host memory: images x feature size x 4 bytes (LP on DenseNet-121: 4 KB per image;
cut-off after ``features.denseblock4`` at 224 px: 196 KB per image).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from monai.data import DataLoader, MetaTensor
from monai.transforms import Compose, OneOf, RandomOrder, SomeOf
from monai.transforms.traits import RandomizableTrait
from torch.utils.data import Dataset, get_worker_info
from tqdm import tqdm

from common.data.loader import resolve_num_workers
from common.errors import ConfigError, DataError
from common.finetune.base import FinetuneStrategy
from common.finetune.strategies.cutoff import CutoffLayer, split_at_layer
from common.finetune.strategies.lp import LP
from common.networks.layer_groups import head_group
from common.networks.sequential import split_sequential

__all__ = ["FrozenFeatureCache", "CachedFeatureDataset", "random_transforms"]

logger = logging.getLogger(__name__)


def random_transforms(transform: Any) -> list[str]:
    """Class names of the random transforms in ``transform`` (a transform, ``Compose`` or list), in order.

    Example:
        >>> from monai.transforms import RandFlipd, ScaleIntensityd
        >>> random_transforms(Compose([ScaleIntensityd("image"), RandFlipd("image", prob=0.5)]))
        ['RandFlipd']
    """
    if transform is None:
        return []
    if isinstance(transform, OneOf | SomeOf | RandomOrder):
        return [type(transform).__name__]
    if isinstance(transform, Compose):
        transform = transform.transforms
    if isinstance(transform, Sequence):
        return [name for t in transform for name in random_transforms(t)]
    return [type(transform).__name__] if isinstance(transform, RandomizableTrait) else []


def _frozen_parameters(model: nn.Module, strategy: FinetuneStrategy) -> list[str]:
    if isinstance(strategy, CutoffLayer):
        return split_at_layer(model, strategy.layer, strategy.boundary)[0]
    if isinstance(strategy, LP):
        head = head_group(model)
        return [n for n, _ in model.named_parameters() if not head.owns(n)]
    raise ConfigError(f"cache_features supports the LP and CutoffLayer strategies (their frozen part never "
                      f"changes during training); finetune is {type(strategy).__name__}. Use "
                      f"configs/finetune/lp_cached.json or cutoff_cached.json, or set cache_features to false")


class FrozenFeatureCache:
    """The network cut into a frozen trunk and a trainable top for training on cached trunk features.

    The cut follows the strategy: :class:`~common.finetune.LP` freezes everything but the head, so the
    trunk ends with the pooled features (DenseNet-121: 1024 values); :class:`~common.finetune.CutoffLayer`
    freezes up to the end of the forward-pass block holding its layer (its default ``boundary="block"``: any layer
    gives a sequential boundary; with ``boundary="layer"`` the layer must itself end one). For DenseNet-121 the
    default ``conv5_block16_2_conv`` is the last layer of ``features.denseblock4``, so the cut lies after that
    block and ``features.norm5`` + the classifier train on 1024 x 7 x 7 maps at 224 px.

    Args:
        network: the bundle's ``@network`` (a registered torchvision classifier, not DDP-wrapped).
        strategy: the bundle's ``@finetune``: LP or CutoffLayer.
        enabled: ``False`` turns caching off (``trainer_network`` is the whole network and
            :class:`CachedFeatureDataset` passes images through): the bundle's ``cache_features`` key.

    Raises:
        ConfigError: another strategy, a DDP-wrapped network, or (``boundary="layer"``) a cut-off layer that
            is not at a sequential boundary (the message lists the nearest valid layers).

    Example:
        >>> import torchvision
        >>> cache = FrozenFeatureCache(torchvision.models.resnet18(num_classes=2), LP())
        >>> cache.split.top_names
        ('fc',)
    """

    def __init__(self, network: nn.Module, strategy: FinetuneStrategy, enabled: bool = True) -> None:
        if isinstance(network, nn.DataParallel | nn.parallel.DistributedDataParallel):
            raise ConfigError("cache_features runs in one process; it cannot be combined with the multi-GPU "
                              "overlay (DistributedDataParallel network). Set cache_features to false")
        self.network = network
        self.enabled = bool(enabled)
        self.split = split_sequential(network, _frozen_parameters(network, strategy)) if self.enabled else None

    @property
    def trunk(self) -> nn.Module:
        """The frozen part (``ConfigError`` when caching is off)."""
        return self._require_split().trunk

    @property
    def top(self) -> nn.Module:
        """The trained part, fed with cached trunk features (``ConfigError`` when caching is off)."""
        return self._require_split().top

    @property
    def trainer_network(self) -> nn.Module:
        """What the trainer should run: the top when caching, else the whole network."""
        return self.top if self.enabled else self.network

    def _require_split(self) -> Any:
        if self.split is None:
            raise ConfigError("cache_features is false: there is no trunk/top split")
        return self.split

    def check_trunk_frozen(self) -> None:
        """Raise ``ConfigError`` when a trunk parameter would train (the cache would silently ignore it)."""
        trunk = {id(p) for p in self.trunk.parameters()}
        trainable = [n for n, p in self.network.named_parameters() if id(p) in trunk and p.requires_grad]
        if trainable:
            raise ConfigError(
                f"{len(trainable)} parameters inside the cached trunk require grad, e.g. {trainable[:3]}; caching "
                f"needs them frozen. Build the optimizer from @finetune.param_groups before training starts "
                f"(train.json does)"
            )

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Trunk output for a batch, computed in eval mode without gradients; returned on the CPU."""
        modes = {m: m.training for m in self.trunk.modules()}
        self.trunk.eval()
        try:
            device = next(self.trunk.parameters()).device
            if isinstance(images, MetaTensor):
                images = images.as_tensor()
            return self.trunk(images.to(device)).cpu()
        finally:
            for module, mode in modes.items():
                module.training = mode


class CachedFeatureDataset(Dataset):
    """Serve ``{"image": trunk features, "label": label}`` for every item of ``dataset``, computed once.

    The features are computed on the first item asked for (in the main process: the overlay gives the
    training DataLoader ``num_workers: 0``, since the cache is in memory), by one pass of a DataLoader
    over ``dataset`` (its own transform, ``batch_size``, ``num_workers`` for image decoding). Call
    :meth:`build` to compute them earlier.

    Args:
        dataset: the bundle's ``@train#dataset`` (items are dicts with ``"image"`` and ``"label"``).
        feature_cache: the :class:`FrozenFeatureCache`; when it is disabled, items pass through unchanged.
        batch_size: images per trunk forward pass while caching.
        num_workers: DataLoader workers reading images while caching (an integer or ``"auto"``, see
            :func:`common.data.loader.resolve_num_workers`).

    Raises:
        ConfigError: ``dataset``'s transform holds random transforms (see the module docstring).
    """

    def __init__(self, dataset: Dataset, feature_cache: FrozenFeatureCache, batch_size: int = 32,
                 num_workers: int | str = 0) -> None:
        self.dataset, self.feature_cache = dataset, feature_cache
        self.batch_size, self.num_workers = int(batch_size), resolve_num_workers(num_workers)
        self.features: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        random = random_transforms(getattr(dataset, "transform", None))
        if feature_cache.enabled and random:
            raise ConfigError(
                f"cache_features is true but the training transforms are random ({', '.join(random)}): features "
                f"cached once would freeze one random draw for the whole run. Set \"augmentation\": [] (the "
                f"*_cached.json overlays do) or cache_features to false"
            )

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        if not self.feature_cache.enabled:
            return self.dataset[index]
        if self.features is None:
            self.build()
        return {"image": self.features[index], "label": self.labels[index]}

    def build(self) -> None:
        """Run the trunk over every image once and keep features and labels in memory."""
        if get_worker_info() is not None:
            raise ConfigError("CachedFeatureDataset was first read inside a DataLoader worker, so every worker "
                              "would compute its own cache; give its DataLoader num_workers 0 or call build()")
        self.feature_cache.check_trunk_frozen()
        start = time.perf_counter()
        loader = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers)
        features: torch.Tensor | None = None
        labels: list[torch.Tensor] = []
        offset = 0
        for batch in tqdm(loader, desc="caching frozen features", disable=None):
            if "label" not in batch:
                raise DataError("CachedFeatureDataset items need a 'label' key; found: " + ", ".join(batch))
            out = self.feature_cache.features(batch["image"])
            if features is None:  # one preallocated tensor: no second copy of a large cut-off cache
                features = torch.empty((len(self), *out.shape[1:]), dtype=out.dtype)
            features[offset: offset + len(out)] = out
            offset += len(out)
            label = batch["label"]
            labels.append(label.as_tensor() if isinstance(label, MetaTensor) else torch.as_tensor(label))
        if features is None or offset != len(self):
            raise DataError(f"CachedFeatureDataset read {offset} items from a dataset of length {len(self)}")
        self.features, self.labels = features, torch.cat(labels)
        logger.info("cached %d feature tensors of shape %s (%.1f MB) in %.1f s; training %s on them",
                    len(self.features), tuple(self.features.shape[1:]),
                    self.features.numel() * self.features.element_size() / 2**20, time.perf_counter() - start,
                    " -> ".join(self.feature_cache.split.top_names))
