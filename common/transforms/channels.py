"""Make a channel-first image what an ImageNet-pretrained network expects: 3 channels, ImageNet mean/std.

Grey images (1 channel) are repeated to 3 channels, RGB images (3 channels) are kept, anything else is a
``DataError``. Then, with ``normalize=True``, each channel becomes ``(x - mean[c]) / std[c]`` with
torchvision's ImageNet statistics by default, which assume float inputs in [0, 1] (``LoadRadiograph``'s
range). This one transform replaces MONAI's ``RepeatChanneld`` + ``NormalizeIntensityd(channel_wise=True)``
pair, which would repeat a 3-channel image to 9 channels and does not check the channel count.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from common.errors import ConfigError, DataError

__all__ = ["ToImageNetInput", "ToImageNetInputd", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _triple(values: Sequence[float], name: str, positive: bool) -> tuple[float, float, float]:
    """Validate a per-channel (R, G, B) triple of finite numbers."""
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) != 3:
        raise ConfigError(f"{name} must be 3 numbers (R, G, B), got {values!r}")
    if any(isinstance(v, bool) or not isinstance(v, int | float | np.number) or not math.isfinite(v) for v in values):
        raise ConfigError(f"{name} must be 3 finite numbers (R, G, B), got {values!r}")
    if positive and min(values) <= 0:
        raise ConfigError(f"{name} values must be > 0, got {values!r}")
    return float(values[0]), float(values[1]), float(values[2])


class ToImageNetInput(Transform):
    """Array transform: ``(1 or 3, *spatial)`` image -> ``(3, *spatial)``, optionally ImageNet-normalised.

    numpy in gives numpy out and torch gives torch (same device); a MetaTensor keeps its meta. Float images
    keep their float dtype. Integer images are accepted only with ``normalize=False`` (they are then only
    repeated), since the ImageNet statistics are defined for [0, 1] floats.

    Args:
        mean: per-channel (R, G, B) mean subtracted; defaults to ImageNet's.
        std: per-channel (R, G, B) standard deviation divided by, each > 0; defaults to ImageNet's.
        normalize: apply ``(x - mean) / std`` after making 3 channels.

    Raises:
        ConfigError: ``mean``/``std`` are not 3 finite numbers, or a ``std`` value is <= 0.
        DataError: at call time, for an image that is not channel-first with 1 or 3 channels, or an integer
            image with ``normalize=True``.

    Example:
        >>> out = ToImageNetInput()(np.full((1, 2, 2), 0.485, np.float32))
        >>> out.shape, float(abs(out[0]).max()) < 1e-6
        ((3, 2, 2), True)
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        normalize: bool = True,
    ) -> None:
        self.mean = _triple(mean, "mean", positive=False)
        self.std = _triple(std, "std", positive=True)
        self.normalize = bool(normalize)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Repeat a grey ``img`` to RGB and normalise it; returns ``img``'s container type."""
        if img.ndim < 3:
            raise DataError(
                f"expected a channel-first image (C, H, W) with C 1 or 3, got shape {tuple(img.shape)}; "
                "add a channel with EnsureChannelFirst"
            )
        channels = img.shape[0]
        if channels not in (1, 3):
            raise DataError(
                f"expected 1 (grey) or 3 (RGB) channels first, got shape {tuple(img.shape)} ({channels} channels); "
                "move a channel-last axis with EnsureChannelFirst, drop alpha before this transform"
            )
        is_float = img.dtype.is_floating_point if isinstance(img, torch.Tensor) else img.dtype.kind == "f"
        if self.normalize and not is_float:
            raise DataError(
                f"ImageNet normalisation needs a float image in [0, 1], got dtype {img.dtype}; "
                "scale it first (e.g. ScaleIntensity) or pass normalize=False"
            )
        shape = (3,) + (1,) * (img.ndim - 1)
        if isinstance(img, torch.Tensor):
            rgb = img.repeat(3, *([1] * (img.ndim - 1))) if channels == 1 else img
            if not self.normalize:
                return rgb
            mean = torch.as_tensor(self.mean, dtype=img.dtype, device=img.device).reshape(shape)
            std = torch.as_tensor(self.std, dtype=img.dtype, device=img.device).reshape(shape)
            return (rgb - mean) / std
        rgb = np.repeat(img, 3, axis=0) if channels == 1 else img
        if not self.normalize:
            return rgb
        mean, std = np.asarray(self.mean, img.dtype).reshape(shape), np.asarray(self.std, img.dtype).reshape(shape)
        return ((rgb - mean) / std).astype(img.dtype, copy=False)


class ToImageNetInputd(MapTransform):
    """Dictionary twin of :class:`ToImageNetInput`.

    Args:
        keys: image keys.
        mean: see :class:`ToImageNetInput`.
        std: see :class:`ToImageNetInput`.
        normalize: see :class:`ToImageNetInput`.
        allow_missing_keys: skip absent keys instead of raising ``KeyError``.

    Example:
        >>> item = ToImageNetInputd("image")({"image": np.zeros((1, 4, 4), np.float32), "label": 1})
        >>> item["image"].shape, item["label"]
        ((3, 4, 4), 1)
    """

    backend = ToImageNetInput.backend

    def __init__(
        self,
        keys: KeysCollection,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        normalize: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = ToImageNetInput(mean, std, normalize)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d
