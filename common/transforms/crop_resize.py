"""Crop to the anatomy's bounding box, then resize without distortion: long side to size, pad to a square.

``ForegroundCrop`` computes the box with MONAI's ``generate_spatial_bounding_box`` and crops with
``CropForeground.crop_pad`` (so a MetaTensor gets MONAI's affine update and an invertible trace); it does not
call ``CropForeground`` directly because that takes the box from the image itself and only knows margins in
pixels, while we take it from a separate mask when given and also accept a fractional margin.
``AspectResize`` is MONAI ``Resize(size_mode="longest")`` followed by ``SpatialPad`` (``ResizeWithPadOrCrop``
is not needed: after the resize no side exceeds the target, so there is never anything to crop).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.data import MetaTensor, get_track_meta
from monai.transforms import CropForeground, InvertibleTransform, MapTransform, Resize, SpatialPad
from monai.transforms.utils import generate_spatial_bounding_box
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor, ensure_tuple_rep

from common.errors import ConfigError, DataError

__all__ = ["ForegroundCrop", "ForegroundCropd", "AspectResize", "AspectResized", "RESIZE_MODES"]

logger = logging.getLogger(__name__)

RESIZE_MODES = ("area", "nearest", "nearest-exact", "bilinear", "bicubic")


def _check_image(img: NdarrayOrTensor, name: str = "image") -> None:
    if img.ndim < 3:
        raise DataError(f"{name}: expected a channel-first image (C, H, W), found shape {tuple(img.shape)}")
    if min(img.shape) == 0:
        raise DataError(f"{name}: image is empty (shape {tuple(img.shape)})")


def _restore_type(out: NdarrayOrTensor, img: NdarrayOrTensor) -> NdarrayOrTensor:
    """``out`` in ``img``'s container type and dtype; integer images are rounded and clipped, not truncated."""
    dtype = img.dtype
    is_float = dtype.is_floating_point if isinstance(dtype, torch.dtype) else np.issubdtype(dtype, np.floating)
    if not is_float:
        info = torch.iinfo(dtype) if isinstance(dtype, torch.dtype) else np.iinfo(dtype)
        out = (
            out.round().clip(info.min, info.max)
            if isinstance(out, np.ndarray)
            else out.round().clamp(info.min, info.max)
        )
    return convert_to_dst_type(out, dst=img)[0]


class ForegroundCrop(InvertibleTransform):
    """Array transform: crop a channel-first image to the bounding box of its foreground plus a margin.

    The foreground is ``mask > threshold`` (any channel) when a mask is given, else ``img > threshold``. The
    box is clipped to the image (no padding). An image without foreground is returned unchanged with a warning.

    Args:
        margin: extra border on every side: an int is pixels, a float in [0, 1] a fraction of the box extent
            along that axis (rounded to pixels).
        threshold: values above it are foreground.

    Example:
        >>> image = np.zeros((1, 10, 12), np.float32); image[0, 3:6, 4:9] = 1.0
        >>> ForegroundCrop(margin=1)(image).shape
        (1, 5, 7)
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, margin: int | float = 0, threshold: float = 0.0) -> None:
        is_int = isinstance(margin, (int, np.integer)) and not isinstance(margin, bool)
        if not ((is_int and margin >= 0) or (isinstance(margin, float) and 0.0 <= margin <= 1.0)):
            raise ConfigError(f"margin must be an int >= 0 (pixels) or a float in [0, 1] (fraction), found {margin!r}")
        self.margin = margin
        self.threshold = float(threshold)
        self.cropper = CropForeground(allow_smaller=True)

    def _select(self, values: NdarrayOrTensor) -> NdarrayOrTensor:
        return values > self.threshold

    def compute_bounding_box(self, source: NdarrayOrTensor) -> tuple[np.ndarray, np.ndarray] | None:
        """``(start, end)`` spatial box of ``source``'s foreground with the margin, clipped; None when empty."""
        _check_image(source, "mask")
        box = generate_spatial_bounding_box(source, self._select, allow_smaller=True)
        start, end = np.asarray(box[0], dtype=np.int64), np.asarray(box[1], dtype=np.int64)
        if np.any(end <= start):
            return None
        margin = np.rint((end - start) * self.margin) if isinstance(self.margin, float) else self.margin
        shape = np.asarray(source.shape[1:], dtype=np.int64)
        return np.maximum(start - margin, 0).astype(np.int64), np.minimum(end + margin, shape).astype(np.int64)

    def __call__(self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None = None) -> NdarrayOrTensor:
        _check_image(img)
        if mask is not None and tuple(mask.shape[1:]) != tuple(img.shape[1:]):
            raise DataError(f"mask spatial shape {tuple(mask.shape[1:])} differs from image {tuple(img.shape[1:])}")
        box = self.compute_bounding_box(img if mask is None else mask)
        if box is None:
            logger.warning("no foreground above %g found; image not cropped", self.threshold)
            return img
        return self.crop(img, *box)

    def crop(self, img: NdarrayOrTensor, start: np.ndarray, end: np.ndarray) -> NdarrayOrTensor:
        """Crop ``img`` to ``[start, end)`` (spatial), keeping its type; MetaTensors record the crop."""
        cropped = self.cropper.crop_pad(convert_to_tensor(img, track_meta=get_track_meta()), start, end)
        return convert_to_dst_type(cropped, dst=img)[0]

    def inverse(self, img: MetaTensor) -> MetaTensor:
        """Pad a cropped MetaTensor back to its original size (zeros outside the box)."""
        return self.cropper.inverse(img)


class ForegroundCropd(MapTransform, InvertibleTransform):
    """Dictionary twin of :class:`ForegroundCrop`: one box, from ``source_key``, crops every key.

    Args:
        keys: items to crop (e.g. ``["image", "mask"]``); all must share the source's spatial shape.
        source_key: item whose foreground defines the box (e.g. the ``mask_key`` of ``ArtifactMaskd``);
            None uses the first key.
        margin: see :class:`ForegroundCrop`.
        threshold: see :class:`ForegroundCrop`.

    Example:
        >>> crop = ForegroundCropd(["image", "mask"], source_key="mask", margin=0.05)
    """

    backend = ForegroundCrop.backend

    def __init__(
        self,
        keys: KeysCollection,
        source_key: str | None = None,
        margin: int | float = 0,
        threshold: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.source_key = self.keys[0] if source_key is None else source_key
        self.cropper = ForegroundCrop(margin=margin, threshold=threshold)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.source_key not in d:
            raise DataError(f"source_key {self.source_key!r} not in the item; found keys {list(d)}")
        source = d[self.source_key]
        box = self.cropper.compute_bounding_box(source)
        if box is None:
            logger.warning(
                "%r: no foreground above %g found; item not cropped", self.source_key, self.cropper.threshold
            )
            return d
        for key in self.key_iterator(d):
            _check_image(d[key], str(key))
            if tuple(d[key].shape[1:]) != tuple(source.shape[1:]):
                raise DataError(
                    f"{key!r}: spatial shape {tuple(d[key].shape[1:])} differs from {self.source_key!r} "
                    f"{tuple(source.shape[1:])}"
                )
            d[key] = self.cropper.crop(d[key], *box)
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.cropper.inverse(d[key])
        return d


class AspectResize(InvertibleTransform):
    """Array transform: resize so the long side is ``image_size`` (aspect kept), then pad to a square.

    The content is centred; the padding uses the constant ``pad_value``. Integer images come back rounded
    in their own dtype. Compared with a plain ``Resize((s, s))`` nothing is stretched: a 2:1 film stays 2:1.

    Args:
        image_size: side of the square output, >= 1.
        mode: interpolation, one of :data:`RESIZE_MODES`; ``"area"`` suits downsampling images, ``"nearest"``
            masks.
        pad_value: value of the padded border.
        anti_aliasing: Gaussian-smooth before downsampling (MONAI ``Resize`` option).

    Example:
        >>> AspectResize(64)(np.ones((1, 100, 50), np.float32)).shape
        (1, 64, 64)
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self, image_size: int, mode: str = "area", pad_value: float = 0.0, anti_aliasing: bool = False
    ) -> None:
        if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
            raise ConfigError(f"image_size must be an int >= 1, found {image_size!r}")
        if mode not in RESIZE_MODES:
            raise ConfigError(f"unknown resize mode {mode!r}; choose from: {', '.join(RESIZE_MODES)}")
        self.image_size = int(image_size)
        self.pad_value = float(pad_value)
        self.resizer = Resize(self.image_size, size_mode="longest", mode=mode, anti_aliasing=anti_aliasing)
        self.padder = SpatialPad(self.image_size, mode="constant", value=self.pad_value)  # int: every spatial axis

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        _check_image(img)
        resized = self.resizer(convert_to_tensor(img, track_meta=get_track_meta()))
        return _restore_type(self.padder(resized), img)

    def inverse(self, img: MetaTensor) -> torch.Tensor:
        """Remove the padding and resize back to the original shape (MetaTensor with its trace)."""
        return self.resizer.inverse(self.padder.inverse(img))


class AspectResized(MapTransform, InvertibleTransform):
    """Dictionary twin of :class:`AspectResize`; ``mode`` and ``pad_value`` may be given per key.

    Example:
        >>> resize = AspectResized(["image", "mask"], 512, mode=["area", "nearest"])
    """

    backend = AspectResize.backend

    def __init__(
        self,
        keys: KeysCollection,
        image_size: int,
        mode: str | Sequence[str] = "area",
        pad_value: float | Sequence[float] = 0.0,
        anti_aliasing: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        try:
            modes, values = ensure_tuple_rep(mode, len(self.keys)), ensure_tuple_rep(pad_value, len(self.keys))
        except ValueError as err:
            raise ConfigError(f"mode/pad_value need one value or one per key ({len(self.keys)} keys): {err}") from err
        self.resizers = [AspectResize(image_size, m, v, anti_aliasing) for m, v in zip(modes, values, strict=True)]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, resizer in self.key_iterator(d, self.resizers):
            d[key] = resizer(d[key])
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, resizer in self.key_iterator(d, self.resizers):
            d[key] = resizer.inverse(d[key])
        return d
