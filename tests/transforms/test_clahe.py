"""CLAHE(d): local contrast on a real chest radiograph, scikit-image reference, types, RGB modes, bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from pydicom.data import get_testdata_file
from skimage import data as skdata
from skimage.exposure import equalize_adapthist

from common.errors import ConfigError, DataError
from common.transforms import read_radiograph
from common.transforms.clahe import CLAHE, CLAHEd

RG1 = get_testdata_file("RG1_UNCI.dcm")


def _resize_longest(image: np.ndarray, longest: int) -> np.ndarray:
    scale = longest / max(image.shape[:2])
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))  # cv2 takes (W, H)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _local_std(plane: np.ndarray, window: int = 16) -> float:
    """Mean standard deviation over non-overlapping ``window`` x ``window`` blocks."""
    h, w = plane.shape[0] // window * window, plane.shape[1] // window * window
    blocks = plane[:h, :w].astype(np.float64).reshape(h // window, window, w // window, window)
    return float(blocks.std(axis=(1, 3)).mean())


def _lab(rgb_chw: np.ndarray) -> np.ndarray:
    hwc = np.ascontiguousarray(np.moveaxis(rgb_chw, 0, -1), dtype=np.float32) / 255.0
    return cv2.cvtColor(hwc, cv2.COLOR_RGB2Lab)


@pytest.fixture(scope="module")
def chest() -> np.ndarray:
    """RG1_UNCI chest radiograph, (H, W) float32 in [0, 1], longest side 512 px."""
    image, _ = read_radiograph(RG1)
    return _resize_longest(image, 512)


@pytest.fixture(scope="module")
def retina() -> np.ndarray:
    """scikit-image's fundus photograph as channel-first uint8 RGB, 256 x 256."""
    return np.ascontiguousarray(np.moveaxis(_resize_longest(skdata.retina(), 256), -1, 0))


@pytest.mark.parametrize(
    ("kwargs", "min_factor"),
    [({}, 2.5), ({"bit_depth": 8, "clip_limit": 2.0}, 1.6)],
    ids=["defaults-16bit", "8bit-clip2"],
)
def test_raises_local_contrast_of_real_chest_radiograph(chest: np.ndarray, kwargs: dict, min_factor: float) -> None:
    # Measured on this image: x3.1 at the defaults, x1.94 at 8 bits / clip 2; factors leave a margin.
    out = CLAHE(**kwargs)(chest[None])[0]
    assert out.dtype == np.float32 and 0.0 <= out.min() and out.max() <= 1.0
    assert _local_std(out) > min_factor * _local_std(chest)


def test_higher_clip_limit_gives_more_local_contrast(chest: np.ndarray) -> None:
    # At 8 bits a 64x64-pixel tile has 16 pixels per bin on average, so clip limits 1-4 are distinct counts.
    contrast = [_local_std(CLAHE(clip_limit=c, bit_depth=8)(chest)) for c in (1.0, 2.0, 4.0)]
    assert contrast == sorted(contrast) and contrast[0] < contrast[-1]


def test_close_to_scikit_image_reference(chest: np.ndarray) -> None:
    # Not bit-exact by design: skimage clips iteratively and redistributes every excess count while OpenCV
    # redistributes once and spreads the residual; skimage pads to whole kernels and interpolates from
    # kernel centres differently at the border; OpenCV truncates the clip to a whole count and maps with
    # (bins - 1) / tile pixels. Same tiles (8 x 8), bins (256) and clip (skimage 0.01 = OpenCV 0.01 * 256).
    # Measured: correlation 0.997, mean |difference| 0.018.
    height, width = chest.shape
    ours = CLAHE(clip_limit=0.01 * 256, tile_grid_size=8, bit_depth=8)(chest)
    reference = equalize_adapthist(chest, kernel_size=(height // 8, width // 8), clip_limit=0.01, nbins=256)
    assert np.corrcoef(ours.ravel(), reference.ravel())[0, 1] > 0.98
    assert np.abs(ours - reference).mean() < 0.03


def test_integer_inputs_equal_opencv_bit_for_bit(chest: np.ndarray) -> None:
    image8 = np.rint(chest * 255).astype(np.uint8)
    image16 = np.rint(chest * 65535).astype(np.uint16)
    expected = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(4, 6))  # OpenCV Size is (W, H)
    np.testing.assert_array_equal(CLAHE(3.0, (6, 4))(image8[None])[0], expected.apply(image8))
    np.testing.assert_array_equal(CLAHE(3.0, (6, 4))(image16), expected.apply(image16))
    # Float input at 16 bits is the uint16 result scaled back to [0, 1].
    np.testing.assert_allclose(CLAHE(3.0, (6, 4))(chest), expected.apply(image16) / np.float32(65535), atol=1e-7)


def _as_numpy(array: np.ndarray) -> np.ndarray:
    return array


def _as_torch(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array)


def _as_meta(array: np.ndarray) -> MetaTensor:
    return MetaTensor(torch.from_numpy(array), meta={"filename_or_obj": RG1, "site": "unci"})


@pytest.mark.parametrize(
    ("wrap", "dtype", "out_dtype", "channel_first"),
    [
        (_as_numpy, np.uint8, np.uint8, True),
        (_as_numpy, np.uint16, np.uint16, True),
        (_as_numpy, np.float32, np.float32, True),
        (_as_numpy, np.float64, np.float32, True),
        (_as_numpy, np.uint8, np.uint8, False),
        (_as_torch, np.uint8, torch.uint8, True),
        (_as_torch, np.float32, torch.float32, True),
        (_as_torch, np.float32, torch.float32, False),
        (_as_meta, np.uint16, torch.uint16, True),
        (_as_meta, np.float32, torch.float32, True),
    ],
    ids=[
        "np-u8",
        "np-u16",
        "np-f32",
        "np-f64-to-f32",
        "np-u8-hw",
        "torch-u8",
        "torch-f32",
        "torch-f32-hw",
        "meta-u16",
        "meta-f32",
    ],
)
def test_type_dtype_and_shape_are_preserved(
    chest: np.ndarray, wrap: Callable[[np.ndarray], Any], dtype: type, out_dtype: Any, channel_first: bool
) -> None:
    top = np.iinfo(dtype).max if np.dtype(dtype).kind == "u" else 1.0
    array = (chest * top).round().astype(dtype) if top != 1.0 else chest.astype(dtype)
    image = wrap(array[None] if channel_first else array)
    out = CLAHE()(image)
    assert type(out) is type(image)
    assert out.dtype == out_dtype and tuple(out.shape) == tuple(image.shape)
    if isinstance(image, MetaTensor):
        assert out.meta["filename_or_obj"] == RG1 and out.meta["site"] == "unci"
    # Same values whatever the container.
    np.testing.assert_array_equal(np.asarray(out), CLAHE()(array[None] if channel_first else array))


def test_dictionary_twin_equalises_only_its_keys(chest: np.ndarray) -> None:
    item = {"image": _as_meta(chest[None]), "mask": chest[None].copy(), "label": [1, 0]}
    out = CLAHEd(keys=["image", "missing"], clip_limit=2.0, allow_missing_keys=True)(item)
    np.testing.assert_array_equal(out["image"].numpy(), CLAHE(clip_limit=2.0)(chest[None]))
    assert out["image"].meta["filename_or_obj"] == RG1
    np.testing.assert_array_equal(out["mask"], chest[None])
    assert out["label"] == [1, 0] and item["image"] is not out["image"]
    with pytest.raises(KeyError, match="missing"):
        CLAHEd(keys="missing")(item)


def test_per_channel_equalises_each_channel_on_its_own(retina: np.ndarray) -> None:
    out = CLAHE(channel_mode="per_channel")(retina)
    for channel in range(3):
        np.testing.assert_array_equal(out[channel], CLAHE()(retina[channel]))


def test_luminance_keeps_colour_and_per_channel_does_not(retina: np.ndarray) -> None:
    # Measured mean |change| of LAB a/b: 0.21 (luminance) vs 9.3 (per channel); L local contrast x1.39 / x1.42.
    before = _lab(retina)
    results = {mode: _lab(CLAHE(channel_mode=mode)(retina)) for mode in ("luminance", "per_channel")}
    chroma_change = {mode: float(np.abs(lab[..., 1:] - before[..., 1:]).mean()) for mode, lab in results.items()}
    assert chroma_change["luminance"] < 1.0
    assert chroma_change["per_channel"] > 10 * chroma_change["luminance"]
    for lab in results.values():
        assert _local_std(lab[..., 0]) > 1.25 * _local_std(before[..., 0])


def test_luminance_on_grey_image_is_per_channel(chest: np.ndarray) -> None:
    np.testing.assert_array_equal(CLAHE(channel_mode="luminance")(chest[None]), CLAHE()(chest[None]))


@pytest.mark.parametrize(
    ("value", "dtype", "channels", "mode"),
    [
        (77, np.uint8, 1, "per_channel"),
        (1000, np.uint16, 1, "per_channel"),
        (0.3, np.float32, 1, "per_channel"),
        (0.0, np.float64, 1, "per_channel"),
        (200, np.uint8, 3, "per_channel"),
        (200, np.uint8, 3, "luminance"),
        (0.7, np.float32, 3, "luminance"),
    ],
    ids=["u8", "u16", "f32", "f64-zero", "rgb-per-channel", "rgb-luminance-u8", "rgb-luminance-f32"],
)
def test_constant_image_passes_through_unchanged(value: float, dtype: type, channels: int, mode: str) -> None:
    image = np.full((channels, 40, 48), value, dtype=dtype)
    out = CLAHE(channel_mode=mode)(image)
    np.testing.assert_array_equal(out, image)
    assert out.dtype == (dtype if np.dtype(dtype).kind == "u" else np.float32)


def test_constant_channel_of_rgb_image_passes_through(retina: np.ndarray) -> None:
    image = retina.copy()
    image[2] = 9
    np.testing.assert_array_equal(CLAHE()(image)[2], image[2])


def _with_nan() -> np.ndarray:
    image = np.full((1, 32, 32), 0.5, dtype=np.float32)
    image[0, 3, 4] = np.nan
    return image


def _with_inf() -> np.ndarray:
    image = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(1, 32, 32)
    image[0, 0, 0] = np.inf
    return image


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((1, 1, 32, 32), np.float32), r"\(C, H, W\) or \(H, W\), got shape \(1, 1, 32, 32\)"),
        (np.zeros(32, np.float32), r"got shape \(32,\)"),
        (np.zeros((1, 0, 32), np.float32), r"empty image of shape \(1, 0, 32\)"),
        (np.zeros((2, 32, 32), np.uint8), r"1 \(grey\) or 3 \(RGB\) channels first, got shape \(2, 32, 32\)"),
        (np.zeros((32, 32, 3), np.uint8), r"32 channels\); move a channel-last axis"),
        (_with_nan(), r"NaN or infinite values \(1 pixels\)"),
        (torch.from_numpy(_with_inf()), r"NaN or infinite values \(1 pixels\)"),
        (np.full((1, 32, 32), 1.5, np.float32), r"float images in \[0, 1\], got values in \[1.5, 1.5\]"),
        (np.zeros((1, 32, 32), np.int16), r"dtype int16; accepted: uint8, uint16 or float in \[0, 1\]"),
        (np.zeros((1, 32, 32), bool), r"dtype bool; accepted"),
        (np.zeros((1, 4, 100), np.uint8), r"image of shape \(1, 4, 100\): image of \(4, 100\) pixels \(H, W\) is "
                                          r"too small for CLAHE tile_grid_size \(8, 8\)"),
    ],
    ids=[
        "4d",
        "1d",
        "empty",
        "two-channels",
        "channel-last",
        "nan",
        "inf-torch",
        "float-above-1",
        "int16",
        "bool",
        "tiles-larger-than-image",
    ],
)
def test_bad_image_raises_data_error(image: np.ndarray | torch.Tensor, match: str) -> None:
    with pytest.raises(DataError, match=match):
        CLAHE()(image)


def test_dictionary_twin_raises_the_same_data_error() -> None:
    with pytest.raises(DataError, match=r"image of \(16, 8\) pixels \(H, W\) is too small for CLAHE tile_grid_size "
                                        r"\(8, 9\): it needs at least \(16, 18\) pixels"):
        CLAHEd(keys="image", tile_grid_size=(8, 9))({"image": np.zeros((1, 16, 8), np.uint8)})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"clip_limit": 0}, r"clip_limit must be a finite number > 0 .*got 0"),
        ({"clip_limit": -1.0}, r"got -1.0"),
        ({"clip_limit": float("nan")}, r"got nan"),
        ({"clip_limit": "2"}, r"clip_limit must be a number > 0, got '2'"),
        ({"tile_grid_size": 0}, r"tile_grid_size values must be integers >= 1, got 0"),
        ({"tile_grid_size": (8, 0)}, r"got \(8, 0\)"),
        ({"tile_grid_size": (8, 8, 8)}, r"an int or a pair of ints \(H, W\), got \(8, 8, 8\)"),
        ({"tile_grid_size": "8"}, r"got '8'"),
        ({"tile_grid_size": 2.5}, r"got 2.5"),
        ({"bit_depth": 12}, r"unknown bit_depth 12; choose from: 8, 16"),
        ({"channel_mode": "lab"}, r"unknown channel_mode 'lab'; choose from: 'per_channel', 'luminance'"),
        ({"channel_mode": "luminence"}, r"did you mean 'luminance'\?"),
    ],
    ids=[
        "clip-zero",
        "clip-negative",
        "clip-nan",
        "clip-string",
        "tiles-zero",
        "tiles-pair-zero",
        "tiles-triple",
        "tiles-string",
        "tiles-float",
        "bit-depth-12",
        "mode-unknown",
        "mode-typo",
    ],
)
def test_bad_parameters_raise_config_error_in_constructor(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        CLAHE(**kwargs)
    with pytest.raises(ConfigError, match=match):
        CLAHEd(keys="image", **kwargs)


# --- images too small for the tile grid ---------------------------------------------------------------------------


def test_one_pixel_tiles_are_degenerate() -> None:
    """Why the minimum is 2 px per tile: OpenCV takes 1 px tiles silently and turns a ramp into constant white."""
    ramp = np.linspace(0.2, 0.8, 64, dtype=np.float32).reshape(8, 8)
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    out = clahe.apply(np.rint(ramp * 65535).astype(np.uint16))
    assert np.unique(out).tolist() == [65535]
    two_px = CLAHE(tile_grid_size=8)(np.linspace(0.2, 0.8, 256, dtype=np.float32).reshape(1, 16, 16))
    assert len(np.unique(two_px)) == 9  # gradations survive at the smallest accepted size


@pytest.mark.parametrize(
    ("shape", "tiles", "needed", "hint"),
    [((1, 8, 8), 8, (16, 16), r"use at most \(4, 4\) tiles"),
     ((1, 15, 64), 8, (16, 16), r"use at most \(7, 32\) tiles"),
     ((3, 64, 17), (4, 9), (8, 18), r"use at most \(32, 8\) tiles"),
     ((1, 1, 40), (1, 2), (2, 4), "no tile grid fits an image this small"),
     ((9, 9), 5, (10, 10), r"use at most \(4, 4\) tiles")],
    ids=["one-px-tiles", "short-height", "narrow-width-rgb", "one-row", "2d-odd"],
)
def test_too_small_images_name_the_file_and_the_minimum(shape: tuple, tiles: Any, needed: tuple, hint: str) -> None:
    """A MetaTensor names its file; a plain array is described by its shape. Both give the minimum size."""
    pixels = np.linspace(0, 1, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    size = rf"\({shape[-2]}, {shape[-1]}\)"
    tail = rf"is too small for CLAHE tile_grid_size .*: it needs at least \({needed[0]}, {needed[1]}\) pixels, 2 per "
    tail += rf"tile along each axis; {hint}"
    image = MetaTensor(torch.from_numpy(pixels), meta={"filename_or_obj": "/data/images/00000001_000.png"})
    with pytest.raises(DataError, match=rf"^/data/images/00000001_000\.png: image of {size} pixels \(H, W\) {tail}"):
        CLAHE(tile_grid_size=tiles)(image)
    with pytest.raises(DataError, match=rf"^image of shape \({', '.join(map(str, shape))}\): image of {size} .*{tail}"):
        CLAHE(tile_grid_size=tiles)(pixels)
    with pytest.raises(DataError, match=r"^/data/images/00000001_000\.png: "):
        CLAHEd(keys="image", tile_grid_size=tiles)({"image": image})


def test_two_pixels_per_tile_is_the_smallest_accepted_size() -> None:
    for shape in ((1, 16, 16), (1, 16, 100), (3, 17, 16)):
        out = CLAHE(tile_grid_size=8)(np.linspace(0, 1, int(np.prod(shape)), dtype=np.float32).reshape(shape))
        assert out.shape == shape


def test_other_bad_images_name_the_file_too() -> None:
    image = MetaTensor(torch.full((1, 32, 32), 1.5), meta={"filename_or_obj": "/data/a.dcm"})
    with pytest.raises(DataError, match=r"^/data/a\.dcm: CLAHE expects float images in \[0, 1\]"):
        CLAHE()(image)
