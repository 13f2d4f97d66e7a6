"""Random brightness / contrast / saturation / hue jitter of RGB images (dermoscopy, endoscopy, photographs).

torchvision's ``ColorJitter`` semantics (factors drawn uniformly from ``[1 - b, 1 + b]``, hue shift from
``[-h, h]``), applied with ``torchvision.transforms.v2.functional`` so CPU and CUDA tensors take the same code,
but as a MONAI ``RandomizableTransform``: the draws come from the transform's own ``R`` (seeded by
``set_random_state``, as ``BatchAugment`` and ``Compose`` do), never from torch's global generator. The four
adjustments run in a fixed order (brightness, contrast, saturation, hue), where torchvision shuffles it per call.

Colour jitter only makes sense for colour images: a single-channel image is refused (``DataError``), and the
bundle's ``color_augmentation`` key is refused for ``color="grey"`` by :func:`check_color_settings`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any

import torch
import torchvision.transforms.v2.functional as tvf
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from common.errors import ConfigError, DataError

__all__ = ["COLORS", "RandColorJitter", "RandColorJitterd", "check_color_settings"]

#: values of a bundle's ``color`` key
COLORS = ("rgb", "grey")


def check_color_settings(color: str, color_augmentation: bool) -> str:
    """Refuse ``color_augmentation`` for grey images (jitter of a grey image is only a contrast change).

    Returns:
        ``color`` (so a config can use the call as the value).

    Raises:
        ConfigError: ``color`` not in :data:`COLORS`, or ``color_augmentation`` with ``color="grey"``.

    Example:
        >>> check_color_settings("rgb", True)
        'rgb'
    """
    if color not in COLORS:
        raise ConfigError(f"setting color={color!r} is not valid: choose from {list(COLORS)} (override it with "
                          "--color VALUE)")
    if color_augmentation and color == "grey":
        raise ConfigError("setting color_augmentation=True needs color='rgb': colour jitter of grey (radiology) "
                          "images is meaningless; use contrast_prob for intensity augmentation, or set "
                          "--color_augmentation False")
    return color


def _strength(name: str, value: float, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not 0 <= value <= maximum:  # fmt: skip
        raise ConfigError(f"RandColorJitter {name}={value!r}: expected a number in [0, {maximum}]")
    return float(value)


class RandColorJitter(RandomizableTransform):
    """Array transform: jitter a ``(3, H, W)`` float image in [0, 1] with probability ``prob``.

    Args:
        prob: probability of jittering an image.
        brightness: brightness factor drawn from ``[1 - brightness, 1 + brightness]`` (0 = off; at most 1).
        contrast: contrast factor, likewise.
        saturation: saturation factor, likewise.
        hue: hue shift drawn from ``[-hue, hue]`` in turns (0 = off; at most 0.5).

    Raises:
        ConfigError: a strength outside its range.
        DataError: at call time, an image without exactly 3 channels first.

    Example:
        >>> jitter = RandColorJitter(prob=1.0, brightness=0.2)
        >>> _ = jitter.set_random_state(seed=0)
        >>> jitter(torch.full((3, 2, 2), 0.5)).shape
        torch.Size([3, 2, 2])
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, prob: float = 0.5, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2,
                 hue: float = 0.02) -> None:  # fmt: skip
        RandomizableTransform.__init__(self, _strength("prob", prob, 1.0))
        self.brightness = _strength("brightness", brightness, 1.0)
        self.contrast = _strength("contrast", contrast, 1.0)
        self.saturation = _strength("saturation", saturation, 1.0)
        self.hue = _strength("hue", hue, 0.5)
        self.factors = (1.0, 1.0, 1.0, 0.0)

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if not self._do_transform:
            return
        self.factors = (*(float(self.R.uniform(1.0 - s, 1.0 + s)) for s in
                          (self.brightness, self.contrast, self.saturation)),
                        float(self.R.uniform(-self.hue, self.hue)))  # fmt: skip

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        if img.shape[0] != 3:
            raise DataError(f"colour jitter needs an RGB image (3 channels first); found shape {tuple(img.shape)}: "
                            "load colour images with color='rgb', or turn color_augmentation off")
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        x = convert_to_tensor(img, track_meta=False).float()
        brightness, contrast, saturation, hue = self.factors
        x = tvf.adjust_brightness(x, brightness)
        x = tvf.adjust_contrast(x, contrast)
        x = tvf.adjust_saturation(x, saturation)
        if hue:
            x = tvf.adjust_hue(x, hue)
        out, *_ = convert_to_dst_type(x.clamp(0.0, 1.0), img, dtype=img.dtype if isinstance(img, torch.Tensor)
                                      else None)  # fmt: skip
        return out


class RandColorJitterd(RandomizableTransform, MapTransform):
    """Dictionary twin of :class:`RandColorJitter` (one draw per item, shared by its keys).

    Example:
        >>> jitter = RandColorJitterd("image", prob=1.0, hue=0.05)
        >>> jitter({"image": torch.rand(3, 4, 4)})["image"].shape
        torch.Size([3, 4, 4])
    """

    backend = RandColorJitter.backend

    def __init__(self, keys: KeysCollection, prob: float = 0.5, brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.2, hue: float = 0.02, allow_missing_keys: bool = False) -> None:  # fmt: skip
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.jitter = RandColorJitter(1.0, brightness, contrast, saturation, hue)

    def set_random_state(self, seed: int | None = None, state: Any = None) -> RandColorJitterd:
        super().set_random_state(seed, state)
        self.jitter.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        self.jitter.randomize()
        for key in self.key_iterator(d):
            d[key] = self.jitter(d[key], randomize=False)
        return d
