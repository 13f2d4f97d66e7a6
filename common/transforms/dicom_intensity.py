"""DICOM grey-level pipeline (PS3.3 C.11) as pure functions and as a transform for MONAI-loaded DICOMs.

:func:`dicom_to_unit` is the one implementation of the DICOM intensity math in medxfer: modality LUT
(rescale slope/intercept or a Modality LUT Sequence), then the VOI LUT Sequence or the first window
centre/width (linear, C.11.2.1.2.1), then MONOCHROME1 inversion so that bright always means dense, mapped
onto [0, 1]. Without a VOI transform stored values are scaled by the bit depth (``BitsStored``), or by the
image range when a rescale changed the units. :class:`~common.transforms.radiograph.LoadRadiograph` and
:class:`DicomIntensity` both call it.

:class:`DicomIntensity` runs after MONAI's ``LoadImage(d)(reader="PydicomReader")``. Facts about MONAI 1.6.1's
``PydicomReader`` it relies on:

- it applies ``RescaleSlope``/``RescaleIntercept`` itself whenever either tag exists (never a Modality LUT
  Sequence), hence ``rescale_applied=True`` by default;
- with its default ``prune_metadata=True`` the meta keeps only the geometry tags, so the intensity tags are
  lost: load with ``prune_metadata=False``. The meta then holds every tag under its hex key in the DICOM
  JSON model, e.g. ``meta["00281050"] == {"vr": "DS", "Value": [15000.0]}`` (WindowCenter);
- with its default ``swap_ij=True`` the array is ``(columns, rows)``, the transpose of the displayed image.

Meta written under tag keywords with plain values (``{"WindowCenter": 40.0}``) is accepted too.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_data_type, convert_to_dst_type
from pydicom import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from common.errors import ConfigError, DataError

__all__ = ["DicomIntensity", "DicomIntensityd", "dicom_to_unit", "dataset_from_meta", "scale_to_unit", "INTENSITY_TAGS"]

#: Tags the intensity pipeline reads, keyword -> hex key used by MONAI's PydicomReader meta.
INTENSITY_TAGS = {
    "PhotometricInterpretation": "00280004",
    "BitsStored": "00280101",
    "PixelRepresentation": "00280103",
    "WindowCenter": "00281050",
    "WindowWidth": "00281051",
    "RescaleIntercept": "00281052",
    "RescaleSlope": "00281053",
    "ModalityLUTSequence": "00283000",
    "VOILUTSequence": "00283010",
    "VOILUTFunction": "00281056",
}
_GREY = ("MONOCHROME1", "MONOCHROME2")
_LOAD_HINT = "load with LoadImaged(keys, reader='PydicomReader', prune_metadata=False) to keep them"


def _tag_name(keyword: str) -> str:
    code = INTENSITY_TAGS[keyword]
    return f"{keyword} ({code[:4]},{code[4:]})"


def scale_to_unit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``[low, high]`` linearly onto [0, 1] (clipped), as float32; all zeros when ``high <= low``.

    Example:
        >>> scale_to_unit(np.array([0.0, 5.0, 20.0]), 0.0, 10.0).tolist()
        [0.0, 0.5, 1.0]
    """
    if high <= low:
        return np.zeros_like(values, dtype=np.float32)
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)


def _modality(values: np.ndarray, ds: Dataset, rescaled: bool) -> np.ndarray:
    """Modality LUT output; a Modality LUT Sequence is applied even when ``rescaled`` (no reader applies it)."""
    if "ModalityLUTSequence" not in ds and rescaled:
        return np.asarray(values, dtype=np.float64)
    if "ModalityLUTSequence" in ds and values.dtype.kind == "f":
        values = np.floor(values).astype(np.int64)  # what pydicom's LUT indexing does to floats, without its warning
    try:
        return np.asarray(apply_modality_lut(values, ds), dtype=np.float64)
    except (AttributeError, IndexError, KeyError, NotImplementedError, TypeError, ValueError) as err:
        raise DataError(f"cannot apply the DICOM modality LUT ({type(err).__name__}: {err})") from err


def _voi_lut(values: np.ndarray, ds: Dataset) -> np.ndarray:
    try:
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        # floor(v) - first_map == floor(v - first_map) for the integer first_map: same result as pydicom on floats
        mapped = apply_voi_lut(np.floor(values).astype(np.int64), ds, prefer_lut=True)
    except (AttributeError, IndexError, KeyError, NotImplementedError, TypeError, ValueError) as err:
        raise DataError(f"cannot apply the DICOM VOI LUT Sequence ({type(err).__name__}: {err})") from err
    return scale_to_unit(np.asarray(mapped, dtype=np.float64), 0.0, float(2**bits - 1))


def _window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """PS3.3 C.11.2.1.2 / C.11.2.1.3 windows (LINEAR, LINEAR_EXACT, SIGMOID), mapped onto [0, 1]."""
    if function == "SIGMOID":
        return (1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))).astype(np.float32)
    if function == "LINEAR_EXACT":
        return scale_to_unit(values, center - width / 2, center + width / 2)
    if width <= 1:  # LINEAR with width 1 is a step at center - 0.5
        return (values > center - 0.5).astype(np.float32)
    return scale_to_unit(values, center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2)


def dicom_to_unit(
    values: np.ndarray, ds: Dataset, rescaled: bool = False, window: Sequence[float] | None = None
) -> tuple[np.ndarray, str]:
    """Apply the DICOM grey-level pipeline to one image and map it onto [0, 1], bright meaning dense.

    Args:
        values: stored pixel values (any shape), or modality values when ``rescaled``.
        ds: dataset holding the intensity tags (:data:`INTENSITY_TAGS`); a full ``pydicom`` dataset or one
            from :func:`dataset_from_meta`.
        rescaled: ``values`` already have ``RescaleSlope``/``RescaleIntercept`` applied.
        window: ``(center, width)`` in modality units overriding the dataset's VOI LUT and window.

    Returns:
        ``(image, voi)``: float32 image in [0, 1] and a description of the VOI step used
        (``"window 15000/30000"``, ``"VOI LUT sequence"``, ``"bit depth 15"`` or ``"image range"``).

    Raises:
        DataError: a Modality or VOI LUT Sequence cannot be applied.

    Example:
        >>> ds = Dataset(); ds.PhotometricInterpretation = "MONOCHROME1"; ds.BitsStored = 8
        >>> image, voi = dicom_to_unit(np.array([0, 255], np.uint16), ds)
        >>> image.tolist(), voi
        ([1.0, 0.0], 'bit depth 8')
    """
    modality = _modality(values, ds, rescaled)
    if window is not None:
        center, width = float(window[0]), float(window[1])
        image, voi = _window(modality, center, width), f"window {center:g}/{width:g} (override)"
    elif "VOILUTSequence" in ds:
        image, voi = _voi_lut(modality, ds), "VOI LUT sequence"
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        center = float(np.atleast_1d(ds.WindowCenter)[0])
        width = max(float(np.atleast_1d(ds.WindowWidth)[0]), 1.0)
        function = str(ds.get("VOILUTFunction", "LINEAR")).upper() or "LINEAR"
        image = _window(modality, center, width, function)
        voi = f"window {center:g}/{width:g}" + ("" if function == "LINEAR" else f" {function}")
    elif float(ds.get("RescaleSlope", 1)) == 1 and float(ds.get("RescaleIntercept", 0)) == 0:
        bits = int(ds.get("BitsStored", 8 * values.dtype.itemsize))
        low = -float(2 ** (bits - 1)) if int(ds.get("PixelRepresentation", 0)) == 1 else 0.0  # signed pixels
        image, voi = scale_to_unit(modality, low, low + float(2**bits - 1)), f"bit depth {bits}"
    else:
        image, voi = scale_to_unit(modality, float(modality.min()), float(modality.max())), "image range"
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")) == "MONOCHROME1":
        image = 1.0 - image
    return image, voi


def dataset_from_meta(meta: Mapping[Any, Any]) -> Dataset:
    """Collect the :data:`INTENSITY_TAGS` of an image's meta into a ``pydicom`` dataset.

    Args:
        meta: MetaTensor meta; tags under hex keys in the DICOM JSON model (MONAI's PydicomReader with
            ``prune_metadata=False``) or under keywords with plain values.

    Raises:
        DataError: a tag's value is malformed.

    Example:
        >>> ds = dataset_from_meta({"00281050": {"vr": "DS", "Value": [40.0]}, "WindowWidth": 400})
        >>> float(ds.WindowCenter), float(ds.WindowWidth)
        (40.0, 400.0)
    """
    tags = {code: meta[code] for code in INTENSITY_TAGS.values() if isinstance(meta.get(code), Mapping)}
    try:
        ds = Dataset.from_json(tags)
        # DICOM JSON InlineBinary (an OW LUTData) is little endian; pydicom needs to be told to unpack it.
        ds.set_original_encoding(False, True)
        for keyword in INTENSITY_TAGS:
            if keyword not in ds and keyword in meta and meta[keyword] is not None:
                setattr(ds, keyword, meta[keyword])
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise DataError(f"malformed DICOM intensity tag in the image meta ({type(err).__name__}: {err})") from err
    return ds


def _missing_tags(ds: Dataset, window: tuple[float, float] | None) -> list[str]:
    """Names of the tags the pipeline needs but ``ds`` lacks."""
    missing = [] if "PhotometricInterpretation" in ds else [_tag_name("PhotometricInterpretation")]
    has_voi = "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds)
    rescale_units = "RescaleSlope" in ds or "RescaleIntercept" in ds
    if window is None and not has_voi and not rescale_units and "BitsStored" not in ds:
        alternatives = ", ".join(map(_tag_name, ("WindowCenter", "WindowWidth", "VOILUTSequence")))
        missing.append(f"{_tag_name('BitsStored')} (or {alternatives})")
    return missing


def _check_window(window: Sequence[float] | None) -> tuple[float, float] | None:
    if window is None:
        return None
    numbers = isinstance(window, Sequence) and not isinstance(window, str) and len(window) == 2
    if not numbers or any(isinstance(v, bool) or not isinstance(v, int | float | np.number) for v in window):
        raise ConfigError(f"window must be a pair (center, width) of numbers or None, got {window!r}")
    center, width = float(window[0]), float(window[1])
    if not (math.isfinite(center) and math.isfinite(width) and width >= 1):
        raise ConfigError(f"window needs a finite center and a width >= 1 (PS3.3 C.11.2.1.2), got {window!r}")
    return center, width


def _numeric_values(img: NdarrayOrTensor, source: str) -> np.ndarray:
    values = convert_data_type(img, np.ndarray)[0]
    if values.dtype.kind not in "biuf":
        raise DataError(f"{source}: expected a numeric image, found dtype {values.dtype}")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise DataError(f"{source}: image contains NaN or infinite values ({bad} pixels)")
    return values


class DicomIntensity(Transform):
    """Array transform: DICOM modality/VOI/MONOCHROME1 handling of an image MONAI loaded, onto [0, 1].

    The tags come from the ``meta`` argument, else from the image's MetaTensor meta (see the module
    docstring for what MONAI's PydicomReader stores). The transform is elementwise, so it works on any
    shape and axis order (PydicomReader's ``(W, H)`` included). The output is float32 in [0, 1] in the
    input's container type; a MetaTensor keeps its meta and gets ``meta["voi"]`` describing the VOI step.

    Args:
        window: ``(center, width)`` in modality units (e.g. HU) used instead of the file's VOI LUT/window;
            width >= 1. None uses the file's.
        rescale_applied: the input already has ``RescaleSlope``/``RescaleIntercept`` applied, as MONAI's
            PydicomReader does; False applies them here (raw stored values).

    Raises:
        ConfigError: ``window`` is not a pair of finite numbers with width >= 1.
        DataError: at call time, when the meta lacks the tags needed (the message names them), the
            photometric interpretation is not MONOCHROME1/2, or the image is non-numeric or has NaN/inf.

    Example:
        >>> import torch
        >>> meta = {"00280004": {"vr": "CS", "Value": ["MONOCHROME1"]}, "00280101": {"vr": "US", "Value": [12]}}
        >>> DicomIntensity()(MetaTensor(torch.tensor([[0.0, 4095.0]]), meta=meta)).tolist()
        [[1.0, 0.0]]
    """

    backend = [TransformBackends.NUMPY]

    def __init__(self, window: Sequence[float] | None = None, rescale_applied: bool = True) -> None:
        self.window = _check_window(window)
        self.rescale_applied = bool(rescale_applied)

    def __call__(self, img: NdarrayOrTensor, meta: Mapping[Any, Any] | None = None) -> NdarrayOrTensor:
        """Window ``img`` using ``meta`` (default: ``img.meta``); returns float32 in ``img``'s type."""
        if meta is None:
            meta = img.meta if isinstance(img, MetaTensor) else {}
        ds = dataset_from_meta(meta)
        source = meta.get("filename_or_obj", "image")
        missing = _missing_tags(ds, self.window)
        if missing:
            found = sorted(str(k) for k in meta if str(k) in INTENSITY_TAGS.values() or str(k) in INTENSITY_TAGS)
            raise DataError(
                f"{source}: DICOM tags missing from the image meta: {'; '.join(missing)}; found intensity tags: "
                f"{found or 'none'}; {_LOAD_HINT}"
            )
        photometric = str(ds.PhotometricInterpretation)
        if photometric not in _GREY:
            raise DataError(f"{source}: PhotometricInterpretation {photometric!r} is not grey; accepted: {_GREY}")
        values = _numeric_values(img, source)
        try:
            image, voi = dicom_to_unit(values, ds, rescaled=self.rescale_applied, window=self.window)
        except DataError as err:
            raise DataError(f"{source}: {err}") from err
        out = convert_to_dst_type(image, dst=img, dtype=np.float32)[0]
        if isinstance(out, MetaTensor):
            out.meta["voi"] = voi
        return out


class DicomIntensityd(MapTransform):
    """Dictionary twin of :class:`DicomIntensity`.

    The tags come from the image's MetaTensor meta, else from ``data[f"{key}_{meta_key_postfix}"]`` (what
    ``LoadImaged(image_only=False)`` writes).

    Args:
        keys: image keys.
        window: see :class:`DicomIntensity`.
        rescale_applied: see :class:`DicomIntensity`.
        meta_key_postfix: suffix of the separate meta dictionary key.
        allow_missing_keys: skip absent keys instead of raising ``KeyError``.

    Example:
        >>> from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
        >>> load = Compose([LoadImaged("image", reader="PydicomReader", prune_metadata=False),
        ...                 EnsureChannelFirstd("image"), DicomIntensityd("image")])
        >>> load({"image": "chest.dcm"})["image"].shape  # doctest: +SKIP
        torch.Size([1, 1841, 1955])
    """

    backend = DicomIntensity.backend

    def __init__(
        self,
        keys: KeysCollection,
        window: Sequence[float] | None = None,
        rescale_applied: bool = True,
        meta_key_postfix: str = "meta_dict",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = DicomIntensity(window=window, rescale_applied=rescale_applied)
        self.meta_key_postfix = meta_key_postfix

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            meta = None if isinstance(d[key], MetaTensor) else d.get(f"{key}_{self.meta_key_postfix}")
            d[key] = self.converter(d[key], meta)
        return d
