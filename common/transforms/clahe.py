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

Every tile must span at least :data:`MIN_TILE_PIXELS` (2) pixels along each axis: an image of ``(H, W)`` takes
at most ``(H // 2, W // 2)`` tiles, else :class:`~common.errors.DataError` names the file (a ``MetaTensor``'s
``filename_or_obj``) and the minimum size. OpenCV itself never refuses: it pads the image by reflection up to a
multiple of the grid, so a grid larger than the image "works". But a one-pixel tile's histogram holds one
sample and its look-up table sends that pixel to the top of the range: an 8 x 8 ramp under 8 x 8 tiles comes
back as one constant white, and scikit-image's camera photograph downsized to 8 x 8 keeps 4 grey levels.
2 pixels per tile is the smallest size at which a tile's histogram holds more than one sample along each axis
and the output keeps the image's gradations (the 16 x 16 ramp keeps 9 levels); it is a floor that catches a
misconfiguration, not a quality bound: results stay coarse up to several pixels per tile, and real use (a
1024-pixel radiograph under 8 x 8 tiles: 128 pixels per tile) is far above it. The usual cause is CLAHE placed
after a downsizing resize, or a grid meant for full-size images applied to thumbnails.
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

__all__ = ["CLAHE", "CLAHEd", "CHANNEL_MODES", "BIT_DEPTHS", "MIN_TILE_PIXELS"]

CHANNEL_MODES = ("per_channel", "luminance")
BIT_DEPTHS = (8, 16)
_INTEGER_DEPTHS = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}
_ACCEPTED_DTYPES = "uint8, uint16 or float in [0, 1]"
#: Smallest tile side, in pixels, along each axis (see the module docstring for why).
MIN_TILE_PIXELS = 2


def _tile_pair(tile_grid_size: int | Sequence[int]) -> tuple[int, int]:
    """Validate ``tile_grid_size`` and return it as ``(tiles along H, tiles along W)``."""
    values = [tile_grid_size] * 2 if isinstance(tile_grid_size, int | np.integer) else tile_grid_size
    if isinstance(values, str | bytes) or not isinstance(values, Sequence) or len(values) != 2:
        raise ConfigError(f"tile_grid_size must be an int or a pair of ints (H, W), got {tile_grid_size!r}")
    if any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1 for v in values):
        raise ConfigError(f"tile_grid_size values must be integers >= 1, got {tile_grid_size!r}")
    return int(values[0]), int(values[1])


def _source(img: Any, shape: tuple[int, ...]) -> str:
    """The image's file (``filename_or_obj`` of a MetaTensor), else ``image of shape (...)``, to start messages."""
    meta = getattr(img, "meta", None)
    name = meta.get("filename_or_obj") if isinstance(meta, Mapping) else None
    return str(name) if name else f"image of shape {shape}"


def _check_image(image: np.ndarray, source: str) -> np.ndarray:
    """Return ``image`` as ``(C, H, W)``; raise ``DataError`` for shapes, dtypes and values CLAHE cannot take."""
    if image.ndim not in (2, 3):
        raise DataError(f"{source}: CLAHE expects a channel-first 2-D image (C, H, W) or (H, W), got shape "
                        f"{image.shape}")  # fmt: skip
    if image.size == 0:
        raise DataError(f"{source}: CLAHE got an empty image of shape {image.shape}")
    channels = image[None] if image.ndim == 2 else image
    if channels.shape[0] not in (1, 3):
        raise DataError(
            f"{source}: CLAHE expects 1 (grey) or 3 (RGB) channels first, got shape {image.shape} "
            f"({channels.shape[0]} channels); move a channel-last axis with EnsureChannelFirst"
        )
    if channels.dtype in _INTEGER_DEPTHS:
        return channels
    if channels.dtype.kind != "f":
        raise DataError(f"{source}: CLAHE cannot equalise dtype {channels.dtype}; accepted: {_ACCEPTED_DTYPES}")
    if not np.isfinite(channels).all():
        bad = int((~np.isfinite(channels)).sum())
        raise DataError(f"{source}: CLAHE got an image with NaN or infinite values ({bad} pixels)")
    low, high = float(channels.min()), float(channels.max())
    if low < 0.0 or high > 1.0:
        raise DataError(
            f"{source}: CLAHE expects float images in [0, 1], got values in [{low:g}, {high:g}]; "
            f"rescale first (e.g. ScaleIntensity) or pass {_ACCEPTED_DTYPES}"
        )
    return channels


def _check_tiles(tiles: tuple[int, int], size: tuple[int, int], source: str) -> None:
    """Raise unless every tile spans at least ``MIN_TILE_PIXELS`` pixels along each axis."""
    needed = (tiles[0] * MIN_TILE_PIXELS, tiles[1] * MIN_TILE_PIXELS)
    if size[0] >= needed[0] and size[1] >= needed[1]:
        return
    most = (size[0] // MIN_TILE_PIXELS, size[1] // MIN_TILE_PIXELS)
    hint = f"use at most {most} tiles" if min(most) >= 1 else "no tile grid fits an image this small"
    raise DataError(
        f"{source}: image of {size} pixels (H, W) is too small for CLAHE tile_grid_size {tiles}: it needs at least "
        f"{needed} pixels, {MIN_TILE_PIXELS} per tile along each axis; {hint}, or apply CLAHE before downsizing"
    )


class CLAHE(Transform):
    """Array transform: contrast-limited adaptive histogram equalisation of each channel or of RGB lightness.

    Args:
        clip_limit: contrast limit, > 0, in OpenCV's units (multiple of a tile's mean bin height; see the
            module docstring). 2-4 is usual; larger values approach plain adaptive equalisation.
        tile_grid_size: number of tiles along (H, W), or one int for both; each >= 1 and at most half the
            image size, so every tile spans ``MIN_TILE_PIXELS`` (2) pixels or more (checked per image,
            ``DataError`` naming the file otherwise).
        bit_depth: working depth (8 or 16) for float images; integer images use their own depth.
        channel_mode: ``"per_channel"`` equalises every channel on its own; ``"luminance"`` equalises the
            L channel of CIE LAB for 3-channel RGB and converts back (hue kept, out-of-gamut colours
            clipped). A single channel is its own luminance, so both modes agree on grey images.

    Raises:
        ConfigError: a parameter is out of range or unknown (the message lists the accepted values).
        DataError: at call time, for a wrong shape, empty image, unsupported dtype, NaN/inf, float values
            outside [0, 1] or an image smaller than 2 pixels per tile; the message starts with the image's file
            (a ``MetaTensor``'s ``filename_or_obj``) or its shape.

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
        source = _source(img, tuple(array.shape))
        channels = _check_image(array, source)
        _check_tiles(self.tile_grid_size, (int(channels.shape[1]), int(channels.shape[2])), source)
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
