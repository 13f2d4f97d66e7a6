"""Load a medical image of any of our modalities: grey (radiograph, mammogram, DICOM) or colour (histology, photos).

Grey images (grey PNG 8/16-bit, grey JPEG, DICOM) go through :func:`common.transforms.radiograph.read_radiograph`
(modality and VOI LUT, MONOCHROME1 inversion) and become one channel; colour images (RGB, RGBA, palette or CMYK
PNG/JPEG) become three RGB channels, the alpha channel dropped. Both are float32 in [0, 1], channel first, so a
mixed batch only needs ``ToImageNetInputd`` (which repeats one channel to three) after resizing.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends
from PIL import Image, UnidentifiedImageError

from common.errors import DataError
from common.transforms.radiograph import read_radiograph

__all__ = ["read_medical_image", "LoadMedicalImage", "LoadMedicalImaged", "COLOUR_MODES"]

#: PIL modes read as colour (three channels); every other mode is read as grey.
COLOUR_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV")


def _colour_mode(path: Path) -> str | None:
    """The PIL mode of a colour PNG/JPEG, or None for a grey image or a DICOM (read by ``read_radiograph``)."""
    with open(path, "rb") as handle:
        head = handle.read(132)
    if path.suffix.lower() in {".dcm", ".dicom"} or head[128:132] == b"DICM":
        return None
    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode in ("P", "PA"):
                # A palette of greys is a grey image; a coloured palette is a colour image.
                rgb = np.asarray(img.convert("RGB"))
                return mode if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and
                                    np.array_equal(rgb[..., 1], rgb[..., 2])) else None  # fmt: skip
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"{path}: not a readable image file ({err})") from err
    return mode if mode in COLOUR_MODES else None


def _colour_pixels(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()
            rgb = np.asarray(img.convert("RGB"))  # drops alpha; CMYK / YCbCr / palette -> RGB
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"{path}: not a readable image file ({err})") from err
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)


def read_medical_image(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a PNG/JPEG/DICOM as a channel-first float32 array in [0, 1] plus a meta dict.

    Args:
        path: image file; DICOM is recognised by a ``.dcm``/``.dicom`` suffix or the ``DICM`` preamble.

    Returns:
        ``(image, meta)``: image ``(1, H, W)`` for grey inputs, ``(3, H, W)`` RGB for colour ones;
        ``meta["channels"]`` says which (``"grey"`` or ``"rgb"``), ``meta["filename_or_obj"]`` names the file.

    Raises:
        DataError: missing, unreadable or corrupt file, a DICOM that is not one grey frame, NaN/inf pixels.

    Example:
        >>> image, meta = read_medical_image("tiles/TCGA-A1-A0SK.png")  # doctest: +SKIP
        >>> image.shape, meta["channels"]  # doctest: +SKIP
        ((3, 256, 256), 'rgb')
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: image file not found")
    mode = _colour_mode(file)
    if mode is None:
        grey, meta = read_radiograph(file)
        return grey[None], {**meta, "channels": "grey"}
    image = _colour_pixels(file)
    if image.size == 0:
        raise DataError(f"{file}: image is empty (shape {tuple(image.shape)})")
    meta = {"format": "PNG" if file.suffix.lower() == ".png" else "JPEG", "mode": mode, "channels": "rgb",
            "filename_or_obj": str(file), "spatial_shape": np.asarray(image.shape[1:])}  # fmt: skip
    return image, meta


class LoadMedicalImage(Transform):
    """Array transform: path -> ``MetaTensor`` ``(1, H, W)`` (grey) or ``(3, H, W)`` (RGB), float32 in [0, 1].

    Example:
        >>> LoadMedicalImage()("histology_tile.png").shape  # doctest: +SKIP
        torch.Size([3, 256, 256])
    """

    backend = [TransformBackends.TORCH]

    def __call__(self, path: str | os.PathLike) -> MetaTensor:
        image, meta = read_medical_image(path)
        return MetaTensor(torch.from_numpy(np.ascontiguousarray(image)), meta=meta)


class LoadMedicalImaged(MapTransform):
    """Dictionary twin of :class:`LoadMedicalImage`: replaces each key's path with the loaded image."""

    backend = LoadMedicalImage.backend

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadMedicalImage()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])
        return d
