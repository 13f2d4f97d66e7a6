"""Contrast-limited adaptive histogram equalisation (CLAHE) backed by OpenCV's ``cv2.createCLAHE``.

Images are channel-first 2-D, ``(C, H, W)`` with ``C`` 1 (grey) or 3 (RGB), or plain ``(H, W)``. Integer
images are equalised at their own depth (uint8: 256 bins, uint16: 65536 bins) and come back with their
dtype; float images must lie in [0, 1] (``LoadRadiograph``'s range), are quantised to ``bit_depth`` bits,
equalised and returned as float32 in [0, 1]. numpy in gives numpy out, torch gives torch (same device),
and a ``MetaTensor`` keeps its meta.

``clip_limit`` follows OpenCV: it is a multiple of the mean histogram bin height of a tile
(``tile pixels / bins``), truncated to a whole count and never below one count per bin. At 16 bits there
are 65536 bins, so on tiles of fewer than ``65536 / clip_limit`` pixels the limit is one count per bin:
equalisation is then stronger than the same ``clip_limit`` gives at 8 bits. scikit-image's
``equalize_adapthist(clip_limit=c, nbins=256)`` roughly corresponds to ``clip_limit=256 * c`` at 8 bits.

A constant channel (or, in ``"luminance"`` mode, a constant lightness) has no contrast to equalise and
passes through unchanged; OpenCV would otherwise move it to the clip-limited histogram's mid-point.
"""

from __future__ import annotations

import difflib
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_data_type, convert_to_dst_type

from common.errors import ConfigError, DataError

__all__ = ["CLAHE", "CLAHEd", "CHANNEL_MODES", "BIT_DEPTHS"]

CHANNEL_MODES = ("per_channel", "luminance")
BIT_DEPTHS = (8, 16)
_INTEGER_DEPTHS = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}
_ACCEPTED_DTYPES = "uint8, uint16 or float in [0, 1]"


def _tile_pair(tile_grid_size: int | Sequence[int]) -> tuple[int, int]:
    """Validate ``tile_grid_size`` and return it as ``(tiles along H, tiles along W)``."""
    values = [tile_grid_size] * 2 if isinstance(tile_grid_size, int | np.integer) else tile_grid_size
    if isinstance(values, str | bytes) or not isinstance(values, Sequence) or len(values) != 2:
        raise ConfigError(f"tile_grid_size must be an int or a pair of ints (H, W), got {tile_grid_size!r}")
    if any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1 for v in values):
        raise ConfigError(f"tile_grid_size values must be integers >= 1, got {tile_grid_size!r}")
    return int(values[0]), int(values[1])


def _check_image(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as ``(C, H, W)``; raise ``DataError`` for shapes, dtypes and values CLAHE cannot take."""
    if image.ndim not in (2, 3):
        raise DataError(f"CLAHE expects a channel-first 2-D image (C, H, W) or (H, W), got shape {image.shape}")
    if image.size == 0:
        raise DataError(f"CLAHE got an empty image of shape {image.shape}")
    channels = image[None] if image.ndim == 2 else image
    if channels.shape[0] not in (1, 3):
        raise DataError(
            f"CLAHE expects 1 (grey) or 3 (RGB) channels first, got shape {image.shape} "
            f"({channels.shape[0]} channels); move a channel-last axis with EnsureChannelFirst"
        )
    if channels.dtype in _INTEGER_DEPTHS:
        return channels
    if channels.dtype.kind != "f":
        raise DataError(f"CLAHE cannot equalise dtype {channels.dtype}; accepted: {_ACCEPTED_DTYPES}")
    if not np.isfinite(channels).all():
        bad = int((~np.isfinite(channels)).sum())
        raise DataError(f"CLAHE got an image with NaN or infinite values ({bad} pixels)")
    low, high = float(channels.min()), float(channels.max())
    if low < 0.0 or high > 1.0:
        raise DataError(
            f"CLAHE expects float images in [0, 1], got values in [{low:g}, {high:g}]; "
            f"rescale first (e.g. ScaleIntensity) or pass {_ACCEPTED_DTYPES}"
        )
    return channels


class CLAHE(Transform):
    """Array transform: contrast-limited adaptive histogram equalisation of each channel or of RGB lightness.

    Args:
        clip_limit: contrast limit, > 0, in OpenCV's units (multiple of a tile's mean bin height; see the
            module docstring). 2-4 is usual; larger values approach plain adaptive equalisation.
        tile_grid_size: number of tiles along (H, W), or one int for both; each >= 1 and at most the image
            size (checked per image, ``DataError`` otherwise).
        bit_depth: working depth (8 or 16) for float images; integer images use their own depth.
        channel_mode: ``"per_channel"`` equalises every channel on its own; ``"luminance"`` equalises the
            L channel of CIE LAB for 3-channel RGB and converts back (hue kept, out-of-gamut colours
            clipped). A single channel is its own luminance, so both modes agree on grey images.

    Raises:
        ConfigError: a parameter is out of range or unknown (the message lists the accepted values).
        DataError: at call time, for a wrong shape, empty image, unsupported dtype, NaN/inf, float values
            outside [0, 1] or a tile grid larger than the image.

    Example:
        >>> import numpy as np
        >>> low = np.linspace(0.45, 0.55, 64 * 64, dtype=np.float32).reshape(1, 64, 64)  # faint ramp
        >>> out = CLAHE(clip_limit=2.0, tile_grid_size=4)(low)
        >>> out.shape, out.dtype, bool(out.std() > 2 * low.std())
        ((1, 64, 64), dtype('float32'), True)
    """

    # Equalisation runs in numpy/OpenCV; torch and MetaTensor inputs are converted there and back.
    backend = [TransformBackends.NUMPY]

    def __init__(
        self,
        clip_limit: float = 2.0,
        tile_grid_size: int | Sequence[int] = 8,
        bit_depth: int = 16,
        channel_mode: str = "per_channel",
    ) -> None:
        if isinstance(clip_limit, bool) or not isinstance(clip_limit, int | float | np.number):
            raise ConfigError(f"clip_limit must be a number > 0, got {clip_limit!r}")
        if not (np.isfinite(clip_limit) and clip_limit > 0):
            raise ConfigError(f"clip_limit must be a finite number > 0 (OpenCV units, e.g. 2.0), got {clip_limit!r}")
        if isinstance(bit_depth, bool) or bit_depth not in BIT_DEPTHS:
            raise ConfigError(f"unknown bit_depth {bit_depth!r}; choose from: {', '.join(map(str, BIT_DEPTHS))}")
        if channel_mode not in CHANNEL_MODES:
            close = difflib.get_close_matches(str(channel_mode), CHANNEL_MODES, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"unknown channel_mode {channel_mode!r}; {hint}choose from: {', '.join(map(repr, CHANNEL_MODES))}"
            )
        self.clip_limit = float(clip_limit)
        self.tile_grid_size = _tile_pair(tile_grid_size)
        self.bit_depth = int(bit_depth)
        self.channel_mode = channel_mode

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Equalise ``img`` ((C, H, W) or (H, W)); returns the input's type, and dtype for uint8/uint16."""
        array = convert_data_type(img, np.ndarray)[0]
        channels = _check_image(array)
        rows, cols = self.tile_grid_size
        height, width = channels.shape[1:]
        if rows > height or cols > width:
            raise DataError(
                f"tile_grid_size {self.tile_grid_size} is larger than the image ({height}, {width}) (H, W); "
                f"use at most ({height}, {width}) tiles"
            )
        integer = channels.dtype in _INTEGER_DEPTHS
        depth = _INTEGER_DEPTHS[channels.dtype] if integer else self.bit_depth
        if self.channel_mode == "luminance" and channels.shape[0] == 3:
            out = self._equalise_luminance(channels, depth)
        else:
            out = np.stack([self._equalise_plane(plane, depth) for plane in channels])
        out = out if array.ndim == 3 else out[0]
        return convert_to_dst_type(out, dst=img, dtype=channels.dtype if integer else np.float32)[0]

    def _equalise_plane(self, plane: np.ndarray, depth: int) -> np.ndarray:
        """CLAHE of one (H, W) plane: integer planes keep their dtype, float planes come back as float32."""
        integer = plane.dtype in _INTEGER_DEPTHS
        if plane.min() == plane.max():
            return plane if integer else plane.astype(np.float32)
        rows, cols = self.tile_grid_size
        # A fresh CLAHE object per call: cv2.CLAHE cannot be pickled or deep-copied (DataLoader workers).
        clahe = cv2.createCLAHE(clipLimit=self.clip_limit, tileGridSize=(cols, rows))  # OpenCV Size is (W, H)
        if integer:
            return clahe.apply(np.ascontiguousarray(plane))
        top = np.float32(2**depth - 1)
        quantised = np.rint(plane.astype(np.float32) * top).astype(np.uint8 if depth == 8 else np.uint16)
        return clahe.apply(quantised).astype(np.float32) / top

    def _equalise_luminance(self, rgb: np.ndarray, depth: int) -> np.ndarray:
        """Equalise the L of CIE LAB for a (3, H, W) RGB image and convert back to RGB in the input's range."""
        scale = float(np.iinfo(rgb.dtype).max) if rgb.dtype in _INTEGER_DEPTHS else 1.0
        hwc = np.ascontiguousarray(np.moveaxis(rgb, 0, -1), dtype=np.float32) / np.float32(scale)
        lab = cv2.cvtColor(hwc, cv2.COLOR_RGB2Lab)  # float RGB in [0, 1] -> L in [0, 100]
        lightness = np.clip(lab[..., 0] / 100.0, 0.0, 1.0)
        if lightness.min() == lightness.max():
            return rgb if scale != 1.0 else rgb.astype(np.float32)
        lab[..., 0] = self._equalise_plane(lightness, depth) * 100.0
        out = np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0.0, 1.0)
        if scale != 1.0:
            out = np.rint(out * scale).astype(rgb.dtype)
        return np.moveaxis(out, -1, 0)


class CLAHEd(MapTransform):
    """Dictionary twin of :class:`CLAHE`: equalises the image under each key; other keys are left alone.

    Args:
        keys: keys of the images to equalise.
        clip_limit: see :class:`CLAHE`.
        tile_grid_size: see :class:`CLAHE`.
        bit_depth: see :class:`CLAHE`.
        channel_mode: see :class:`CLAHE`.
        allow_missing_keys: skip keys that are absent instead of raising ``KeyError``.

    Example:
        >>> import numpy as np
        >>> item = {"image": np.linspace(0, 1, 4096, dtype=np.float32).reshape(1, 64, 64), "label": [1, 0]}
        >>> CLAHEd(keys="image", tile_grid_size=4)(item)["image"].shape
        (1, 64, 64)
    """

    backend = CLAHE.backend

    def __init__(
        self,
        keys: KeysCollection,
        clip_limit: float = 2.0,
        tile_grid_size: int | Sequence[int] = 8,
        bit_depth: int = 16,
        channel_mode: str = "per_channel",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.clahe = CLAHE(clip_limit, tile_grid_size, bit_depth, channel_mode)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.clahe(d[key])
        return d
