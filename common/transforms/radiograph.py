"""Load a radiograph (PNG 8/16-bit or DICOM) as a single-channel float image in [0, 1].

DICOM handling follows PS3.3 C.11: modality LUT (rescale slope/intercept), then the VOI LUT sequence or
the first window centre/width, then MONOCHROME1 inversion so that bright always means dense. Without a
VOI transform the stored values are scaled by the bit depth (``BitsStored``), or by the image range when
a rescale changed the units. The math is :func:`common.transforms.dicom_intensity.dicom_to_unit`, shared
with ``DicomIntensity`` (the same steps for images loaded by MONAI's ``LoadImage``). PNGs are scaled by
their bit depth; RGB(A) and palette PNGs become grey.

We read files ourselves instead of MONAI's ``LoadImage`` because ``LoadImage`` neither applies VOI/
MONOCHROME1 handling (``DicomIntensity`` adds it) nor names the file and the problem when a file is
corrupt; the output is a MONAI ``MetaTensor`` with the usual ``filename_or_obj`` meta so it composes with
MONAI transforms.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from PIL import Image, UnidentifiedImageError
from pydicom.errors import InvalidDicomError

from common.errors import DataError
from common.transforms.dicom_intensity import dicom_to_unit, scale_to_unit

__all__ = ["read_radiograph", "LoadRadiograph", "LoadRadiographd", "DICOM_DECODER_HINT"]

DICOM_DECODER_HINT = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg (or python-gdcm)"
_PNG_SCALE = {"1": 1.0, "L": 255.0, "P": 255.0, "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0}


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in {".dcm", ".dicom"}:
        return True
    with open(path, "rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


def _check_finite(values: np.ndarray, path: Path) -> None:
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise DataError(f"{path}: image contains NaN or infinite pixel values ({bad} pixels)")


def _dicom_pixels(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable DICOM file ({err})") from err
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        stored = ds.pixel_array
    except AttributeError as err:
        raise DataError(f"{path}: DICOM has no pixel data (PixelData element missing; pydicom drops the element "
                        "of a file cut off inside compressed pixel data: if so, re-download it)") from err
    except (NotImplementedError, RuntimeError) as err:
        name = getattr(syntax, "name", syntax)
        raise DataError(
            f"{path}: cannot decode pixel data with transfer syntax {name} ({syntax}); "
            f"install a decoder: {DICOM_DECODER_HINT}"
        ) from err
    except (ValueError, EOFError) as err:
        raise DataError(f"{path}: corrupt DICOM pixel data ({err})") from err
    if stored.ndim != 2:
        raise DataError(f"{path}: expected one 2-D grey frame, found pixel array of shape {tuple(stored.shape)}")
    _check_finite(stored, path)
    try:
        image, voi = dicom_to_unit(stored, ds)
    except DataError as err:
        raise DataError(f"{path}: {err}") from err
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    meta = {"format": "DICOM", "photometric": photometric, "voi": voi, "modality": str(getattr(ds, "Modality", ""))}
    # Keep the tags later transforms read (mammography laterality / view) when the file has them.
    for keyword in ("ImageLaterality", "Laterality", "ViewPosition"):
        if str(ds.get(keyword, "")).strip():
            meta[keyword] = str(ds.get(keyword)).strip()
    return image, meta


def _png_pixels(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode not in _PNG_SCALE and mode not in {"I", "F"}:
                img = img.convert("L")
            values = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"{path}: not a readable image file ({err})") from err
    _check_finite(values, path)
    if mode in {"I", "F"}:
        # 32-bit integer or float PNG/TIFF: no fixed bit depth, scale by the image range.
        image = scale_to_unit(values.astype(np.float64), float(np.nanmin(values)), float(np.nanmax(values)))
    else:
        image = (values.astype(np.float32) / _PNG_SCALE.get(mode if mode in _PNG_SCALE else "L", 255.0)).astype(
            np.float32
        )
    if image.ndim != 2:
        raise DataError(f"{path}: expected a 2-D grey image, found shape {tuple(image.shape)}")
    return image, {"format": "PNG", "mode": mode}


def read_radiograph(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a PNG/JPEG/DICOM radiograph as a ``(H, W)`` float32 array in [0, 1] plus a meta dict.

    Args:
        path: image file; DICOM is recognised by a ``.dcm`` suffix or the ``DICM`` preamble.

    Returns:
        ``(image, meta)``; bright means dense (MONOCHROME1 inverted).

    Raises:
        DataError: the file is missing, corrupt, not 2-D, undecodable (the message names the transfer
            syntax and the package that adds the decoder) or contains NaN/inf.

    Example:
        >>> image, meta = read_radiograph("images/00000001_000.png")  # doctest: +SKIP
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: image file not found")
    image, meta = _dicom_pixels(file) if _is_dicom(file) else _png_pixels(file)
    if image.size == 0:
        raise DataError(f"{file}: image is empty (shape {tuple(image.shape)})")
    _check_finite(image, file)
    meta["filename_or_obj"] = str(file)
    meta["spatial_shape"] = np.asarray(image.shape)
    return image, meta


class LoadRadiograph(Transform):
    """Array transform: path -> ``MetaTensor`` of shape ``(1, H, W)``, float32 in [0, 1].

    Example:
        >>> LoadRadiograph()("chest.dcm").shape  # doctest: +SKIP
        torch.Size([1, 1841, 1955])
    """

    backend = [torch.Tensor]

    def __call__(self, path: str | os.PathLike) -> MetaTensor:
        image, meta = read_radiograph(path)
        return MetaTensor(torch.from_numpy(np.ascontiguousarray(image))[None], meta=meta)


class LoadRadiographd(MapTransform):
    """Dictionary twin of :class:`LoadRadiograph`: replaces each key's path with the loaded image."""

    backend = LoadRadiograph.backend

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadRadiograph()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])
        return d
