"""Stain augmentation for H&E histology: random jitter in haematoxylin-eosin-DAB (HED) space.

MONAI has colour transforms for intensity and histograms but none in stain space, so this is ours. The
colour deconvolution uses scikit-image's Ruifrok & Johnston (2001) stain matrices (``hed_from_rgb`` /
``rgb_from_hed``) on optical densities directly, without ``rgb2hed``'s clipping of negative stain values,
so that zero jitter is an exact round trip. Each stain channel is scaled by ``1 + U(-sigma, sigma)`` and
shifted by ``U(-bias, bias)``: the augmentation of Tellez et al. 2018 ("Whole-slide mitosis detection in
H&E breast histology using PHH3 as a reference to train distilled stain-invariant convolutional networks").
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import TransformBackends, convert_data_type, convert_to_dst_type
from skimage.color import hed_from_rgb, rgb_from_hed

from common.errors import ConfigError, DataError

__all__ = ["RandHEDJitter", "RandHEDJitterd"]

_MIN_RGB = 1e-6  # optical density of a black pixel is capped at 6


class RandHEDJitter(RandomizableTransform):
    """Randomly perturb the H, E and D stain channels of a channel-first RGB image in [0, 1].

    Args:
        prob: probability of applying the jitter.
        sigma: maximum relative scale change per stain (>= 0; Tellez et al. use 0.05).
        bias: maximum additive shift per stain in optical-density units (>= 0).

    Example:
        >>> RandHEDJitter(prob=1.0).set_random_state(0)(np.full((3, 4, 4), 0.5, np.float32)).shape
        (3, 4, 4)
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(self, prob: float = 0.5, sigma: float = 0.05, bias: float = 0.05) -> None:
        if float(sigma) < 0 or float(bias) < 0:
            raise ConfigError(f"RandHEDJitter sigma and bias must be >= 0, got sigma={sigma}, bias={bias}")
        RandomizableTransform.__init__(self, prob)
        self.sigma, self.bias = float(sigma), float(bias)
        self._scale = np.ones(3)
        self._shift = np.zeros(3)

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._scale = 1.0 + self.R.uniform(-self.sigma, self.sigma, size=3)
        self._shift = self.R.uniform(-self.bias, self.bias, size=3)

    def __call__(self, img: Any, randomize: bool = True) -> Any:
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        if isinstance(img, torch.Tensor) and img.device.type != "cpu":
            return self._jitter_on_device(img)  # the batch path (common.transforms.batch_augment): stay on the GPU
        array = convert_data_type(img, np.ndarray)[0]
        if array.ndim != 3 or array.shape[0] != 3:
            raise DataError(f"RandHEDJitter expects a (3, H, W) RGB image, found shape {tuple(array.shape)}")
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise DataError("RandHEDJitter expects finite RGB values in [0, 1]; scale the image first")
        density = -np.log10(np.maximum(np.moveaxis(array, 0, -1).astype(np.float64), _MIN_RGB))
        stains = density @ hed_from_rgb * self._scale + self._shift
        rgb = np.clip(10.0 ** -(stains @ rgb_from_hed), 0.0, 1.0).astype(np.float32)
        return convert_to_dst_type(np.moveaxis(rgb, -1, 0), img, dtype=torch.float32 if isinstance(
            img, torch.Tensor) else np.float32)[0]


    def _jitter_on_device(self, img: torch.Tensor) -> torch.Tensor:
        """The same jitter in torch (float64, like the numpy path) on ``img``'s device; float32 out."""
        if img.ndim != 3 or img.shape[0] != 3:
            raise DataError(f"RandHEDJitter expects a (3, H, W) RGB image, found shape {tuple(img.shape)}")
        x = img.as_tensor() if hasattr(img, "as_tensor") else img
        if not bool(torch.isfinite(x).all()) or float(x.min()) < 0 or float(x.max()) > 1:
            raise DataError("RandHEDJitter expects finite RGB values in [0, 1]; scale the image first")
        to = {"dtype": torch.float64, "device": x.device}
        density = -torch.log10(x.to(torch.float64).movedim(0, -1).clamp_min(_MIN_RGB))
        stains = density @ torch.as_tensor(hed_from_rgb, **to) * torch.as_tensor(self._scale, **to) \
            + torch.as_tensor(self._shift, **to)
        rgb = (10.0 ** -(stains @ torch.as_tensor(rgb_from_hed, **to))).clamp(0.0, 1.0).to(torch.float32)
        return convert_to_dst_type(rgb.movedim(-1, 0), img, dtype=torch.float32)[0]


class RandHEDJitterd(RandomizableTransform, MapTransform):
    """Dictionary twin of :class:`RandHEDJitter`; the same draw is applied to every key."""

    backend = RandHEDJitter.backend

    def __init__(self, keys: KeysCollection, prob: float = 0.5, sigma: float = 0.05, bias: float = 0.05,
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.jitter = RandHEDJitter(prob=1.0, sigma=sigma, bias=bias)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandHEDJitterd:
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
