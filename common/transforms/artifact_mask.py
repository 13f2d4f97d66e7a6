"""Keep the anatomy, zero burned-in labels, markers, text and scanner borders (radiographs and mammograms).

The anatomy is the largest bright connected region after an Otsu or triangle threshold, an opening that
cuts thin bridges to nearby text, a closing, and hole filling (mammography) or its convex hull
(radiographs: a chest film's dark lungs reach the image edge, so holes do not close them). Pixels outside
it become 0. Mammography mode also turns every breast to one side and can remove the pectoral muscle.

Mammography details (laterality, flip, pectoral muscle) live in :mod:`common.transforms.mammography`;
its public names are importable from here as well.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_data_type, convert_to_dst_type
from skimage.filters import threshold_otsu, threshold_triangle

from common.errors import ConfigError, DataError
from common.transforms.mammography import (
    LATERALITY_META_KEYS,
    VIEW_META_KEYS,
    chest_wall_pectoral,
    find_pectoral_muscle,
    is_mlo_view,
    mirror_affine,
    resolve_laterality,
)
from common.transforms.morphology import fill_region, largest_component, odd_kernel

# The mammography names are re-exported so that imports from this module keep working after the split.
__all__ = [
    "ArtifactMask",
    "ArtifactMaskd",
    "ArtifactMaskResult",
    "find_anatomy_mask",
    "find_pectoral_muscle",
    "resolve_laterality",
    "is_mlo_view",
    "mirror_affine",
    "chest_wall_pectoral",
    "LATERALITY_META_KEYS",
    "VIEW_META_KEYS",
]

logger = logging.getLogger(__name__)

MODES = ("radiograph", "mammography")
THRESHOLD_METHODS: dict[str, Callable[[np.ndarray], float]] = {"otsu": threshold_otsu, "triangle": threshold_triangle}
ORIENTATIONS = ("left", "right")


def _choice(value: str, valid: tuple[str, ...] | dict[str, Any], name: str) -> str:
    if value not in valid:
        raise ConfigError(f"unknown {name} {value!r}; choose from: {', '.join(valid)}")
    return value


def find_anatomy_mask(
    grey: np.ndarray, threshold_method: str = "otsu", kernel_fraction: float = 0.01, hull: bool = False
) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the largest bright region of a 2-D image, cleaned and filled.

    Args:
        grey: ``(H, W)`` finite image, any range.
        threshold_method: ``"otsu"`` or ``"triangle"`` (better for a large dark background, e.g. mammograms).
        kernel_fraction: opening/closing kernel size as a fraction of the short image side (at least 3 px).
        hull: fill to the convex hull instead of filling holes.

    Returns:
        The mask; all False when the image is constant.

    Example:
        >>> image = np.zeros((64, 64)); image[10:50, 5:40] = 1.0; image[2:6, 55:62] = 1.0
        >>> mask = find_anatomy_mask(image)
        >>> bool(mask[30, 20]), bool(mask[4, 58])
        (True, False)
    """
    grey = np.asarray(grey, dtype=np.float32)
    if float(grey.max()) <= float(grey.min()):
        return np.zeros(grey.shape, dtype=bool)
    # float64 into the threshold: scikit-image's histogram builds its bin edges from the image's dtype under NumPy 2
    # (float32 edges for a float32 image; NumPy 1 promoted them to float64), so the threshold, and the mask, would
    # depend on the NumPy version.
    binary = (grey > THRESHOLD_METHODS[threshold_method](grey.astype(np.float64))).astype(np.uint8)
    kernel = odd_kernel(grey.shape, kernel_fraction)
    opened = cv2.morphologyEx(binary, cv2.MORPH_OPEN, kernel)
    region = largest_component(np.asarray(opened)).astype(np.uint8)
    return fill_region(np.asarray(cv2.morphologyEx(region, cv2.MORPH_CLOSE, kernel)), hull)


@dataclass(frozen=True)
class ArtifactMaskResult:
    """What :meth:`ArtifactMask.compute` found.

    Attributes:
        image: the masked (and possibly flipped) image, same type, dtype and shape as the input.
        mask: ``(1, H, W)`` float32 0/1 mask in the input's container type (after any flip).
        flipped: whether the image was mirrored left-right (mammography).
        laterality: ``"L"``, ``"R"``, or ``"U"`` (radiograph mode or blank image).
        laterality_source: ``"argument"``, ``"meta"``, ``"intensity"`` or ``"none"``.
        pectoral_removed: whether a pectoral muscle region was zeroed.
        blank: True when no foreground was found and the image was passed through.
    """

    image: NdarrayOrTensor
    mask: NdarrayOrTensor
    flipped: bool = False
    laterality: str = "U"
    laterality_source: str = "none"
    pectoral_removed: bool = False
    blank: bool = False


class ArtifactMask(Transform):
    """Array transform: zero everything but the anatomy of a channel-first 2-D radiograph or mammogram.

    Input is ``(C, H, W)`` (float or integer, numpy, torch or MetaTensor); the mask is computed on the
    channel mean and applied to every channel; the output has the input's type, dtype, device and shape.
    A MetaTensor keeps its meta; in mammography mode the meta also gets ``flipped``, ``laterality``,
    ``laterality_source`` and ``pectoral_removed``, and a flip updates the affine. A blank image (no
    foreground) is returned unchanged with a logged warning.

    Args:
        mode: ``"radiograph"`` or ``"mammography"`` (adds the flip and optional pectoral removal).
        threshold_method: ``"otsu"`` or ``"triangle"``.
        orientation: mammography only: side of the image the chest wall ends up on, ``"left"`` or ``"right"``.
        remove_pectoral: mammography only: zero the pectoral muscle of MLO views (view from the ``view``
            argument or the DICOM ``ViewPosition`` meta; skipped when the view is unknown).
        kernel_fraction: morphology kernel size as a fraction of the short image side, in (0, 0.5).
        hull: fill the anatomy to its convex hull; None means True for radiographs, False for mammograms.

    Example:
        >>> image = np.zeros((1, 64, 64), np.float32); image[0, 8:56, :30] = 0.5; image[0, 2:6, 56:62] = 1.0
        >>> out = ArtifactMask()(image)
        >>> float(out[0, 2:6, 56:62].max()), float(out[0, 30, 10])
        (0.0, 0.5)
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        mode: str = "radiograph",
        threshold_method: str = "otsu",
        orientation: str = "left",
        remove_pectoral: bool = False,
        kernel_fraction: float = 0.01,
        hull: bool | None = None,
    ) -> None:
        self.mode = _choice(mode, MODES, "mode")
        self.threshold_method = _choice(threshold_method, THRESHOLD_METHODS, "threshold_method")
        self.orientation = _choice(orientation, ORIENTATIONS, "orientation")
        if not 0.0 < float(kernel_fraction) < 0.5:
            raise ConfigError(f"kernel_fraction must be in (0, 0.5), found {kernel_fraction!r}")
        self.kernel_fraction = float(kernel_fraction)
        self.remove_pectoral = bool(remove_pectoral)
        self.hull = (mode == "radiograph") if hull is None else bool(hull)

    def __call__(self, img: NdarrayOrTensor, laterality: str | None = None, view: str | None = None) -> NdarrayOrTensor:
        return self.compute(img, laterality=laterality, view=view).image

    def compute(
        self, img: NdarrayOrTensor, laterality: str | None = None, view: str | None = None
    ) -> ArtifactMaskResult:
        """Mask ``img`` and return the image, the mask and what was done (see :class:`ArtifactMaskResult`).

        Args:
            img: ``(C, H, W)`` image.
            laterality: mammography: ``"L"``/``"R"``/``"left"``/``"right"``; overrides the meta and intensity.
            view: mammography: view position such as ``"MLO"`` or ``"CC"``; overrides the meta.
        """
        array = self._validated(img)
        meta = img.meta if isinstance(img, MetaTensor) else {}
        grey = array.mean(axis=0, dtype=np.float32)
        mask = find_anatomy_mask(grey, self.threshold_method, self.kernel_fraction, self.hull)
        if not mask.any():
            logger.warning(
                "%s: no foreground found; image passed through unmasked", meta.get("filename_or_obj", "image")
            )
            return self._result(img, array, np.ones(grey.shape, dtype=bool), blank=True)
        if self.mode == "radiograph":
            return self._result(img, array, mask)
        side, source = resolve_laterality(grey * mask, meta, laterality)
        flipped = ("left" if side == "L" else "right") != self.orientation
        if flipped:
            array, grey, mask = array[..., ::-1], grey[:, ::-1], mask[:, ::-1]
        removed = False
        if self.remove_pectoral and is_mlo_view(meta, view):
            muscle = chest_wall_pectoral(grey, mask, self.orientation)
            removed = bool(muscle.any())
            mask = mask & ~muscle
        return self._result(img, array, mask, flipped, side, source, removed)

    @staticmethod
    def _validated(img: NdarrayOrTensor) -> np.ndarray:
        shape = tuple(img.shape)
        if len(shape) != 3:
            raise DataError(f"expected a channel-first 2-D image (C, H, W), found shape {shape}")
        if min(shape) == 0:
            raise DataError(f"image is empty (shape {shape})")
        array = convert_data_type(img, output_type=np.ndarray)[0]
        if array.dtype.kind not in "biuf":
            raise DataError(f"expected a numeric image (float, int or uint), found dtype {array.dtype}")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise DataError(f"image contains NaN or infinite pixel values ({int((~np.isfinite(array)).sum())} pixels)")
        return array

    def _result(
        self,
        img: NdarrayOrTensor,
        array: np.ndarray,
        mask: np.ndarray,
        flipped: bool = False,
        laterality: str = "U",
        source: str = "none",
        removed: bool = False,
        blank: bool = False,
    ) -> ArtifactMaskResult:
        masked = np.where(mask[None], array, np.zeros((), dtype=array.dtype)).astype(array.dtype)
        out = convert_to_dst_type(np.ascontiguousarray(masked), dst=img)[0]
        out_mask = convert_to_dst_type(np.ascontiguousarray(mask[None]), dst=img, dtype=torch.float32)[0]
        for target in (out, out_mask):
            if isinstance(target, MetaTensor) and flipped:
                target.affine = mirror_affine(target.affine, array.shape[-1])
        if isinstance(out, MetaTensor) and self.mode == "mammography":
            out.meta.update(flipped=flipped, laterality=laterality, laterality_source=source, pectoral_removed=removed)
        return ArtifactMaskResult(out, out_mask, flipped, laterality, source, removed, blank)


class ArtifactMaskd(MapTransform):
    """Dictionary twin of :class:`ArtifactMask`.

    Laterality and view come from ``data[laterality_key]`` / ``data[view_key]`` when present (they override
    the meta). In mammography mode ``data[flip_key]`` records whether the image was flipped, so that labels
    drawn on the original image can follow; ``data[mask_key]`` receives the ``(1, H, W)`` mask.

    Args:
        keys: image keys to mask; each gets its own mask.
        mode, threshold_method, orientation, remove_pectoral, kernel_fraction, hull: see :class:`ArtifactMask`.
        mask_key: where to write the mask (needs exactly one key); None writes no mask.
        flip_key: where to write the flip flag in mammography mode (needs exactly one key); None to skip.
        laterality_key: item key holding ``"L"``/``"R"``.
        view_key: item key holding the view position (``"MLO"``, ``"CC"``).

    Example:
        >>> t = ArtifactMaskd("image", mode="mammography", mask_key="mask", remove_pectoral=True)
        >>> item = t({"image": image, "laterality": "R", "view": "MLO"})  # doctest: +SKIP
    """

    backend = ArtifactMask.backend

    def __init__(
        self,
        keys: KeysCollection,
        mode: str = "radiograph",
        threshold_method: str = "otsu",
        orientation: str = "left",
        remove_pectoral: bool = False,
        kernel_fraction: float = 0.01,
        hull: bool | None = None,
        mask_key: str | None = None,
        flip_key: str | None = "flipped",
        laterality_key: str = "laterality",
        view_key: str = "view",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.masker = ArtifactMask(mode, threshold_method, orientation, remove_pectoral, kernel_fraction, hull)
        self.flip_key = flip_key if self.masker.mode == "mammography" else None
        for name, value in (("mask_key", mask_key), ("flip_key", self.flip_key)):
            if value is not None and len(self.keys) != 1:
                raise ConfigError(f"{name}={value!r} needs exactly one image key, found keys {list(self.keys)}")
        self.mask_key, self.laterality_key, self.view_key = mask_key, laterality_key, view_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            result = self.masker.compute(d[key], laterality=d.get(self.laterality_key), view=d.get(self.view_key))
            d[key] = result.image
            if self.mask_key is not None:
                d[self.mask_key] = result.mask
            if self.flip_key is not None:
                d[self.flip_key] = result.flipped
        return d
