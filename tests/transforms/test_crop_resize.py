"""ForegroundCrop(d) exact boxes and margins; AspectResize(d) square output with the aspect ratio kept."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from common.errors import ConfigError, DataError
from common.transforms.crop_resize import AspectResize, AspectResized, ForegroundCrop, ForegroundCropd

SHAPE = (40, 60)
ROWS, COLS = (10, 20), (15, 35)  # foreground box [start, end) of the hand-made mask


def hand_mask() -> np.ndarray:
    mask = np.zeros((1, *SHAPE), np.float32)
    mask[0, ROWS[0] : ROWS[1], COLS[0] : COLS[1]] = 1.0
    mask[0, 12, 15] = mask[0, 19, 34] = 1.0  # corners already inside; box unchanged
    return mask


def ramp() -> np.ndarray:
    # A Python float divisor keeps float32 under NumPy 2 promotion too.
    return (np.arange(np.prod(SHAPE), dtype=np.float32).reshape(1, *SHAPE) + 1.0) / float(np.prod(SHAPE))


@pytest.mark.parametrize(
    ("margin", "rows", "cols"),
    [(0, (10, 20), (15, 35)), (3, (7, 23), (12, 38)), (0.1, (9, 21), (13, 37)), (20, (0, 40), (0, 55))],
    ids=["no-margin", "3px", "10pct-of-box", "clipped-at-border"],
)
def test_crop_to_mask_box_with_margin(margin: int | float, rows: tuple[int, int], cols: tuple[int, int]) -> None:
    image = ramp()
    out = ForegroundCrop(margin=margin)(image, mask=hand_mask())
    np.testing.assert_array_equal(out, image[:, rows[0] : rows[1], cols[0] : cols[1]])


def test_crop_without_mask_uses_nonzero_image_and_threshold() -> None:
    image = hand_mask() * 0.8
    image[0, 0, 0] = 0.1  # faint speck: foreground at threshold 0, background at threshold 0.5
    assert ForegroundCrop()(image).shape == (1, 20, 35)
    assert ForegroundCrop(threshold=0.5)(image).shape == (1, 10, 20)


def test_dict_twin_crops_every_key_with_the_source_box() -> None:
    item = {"image": ramp(), "mask": hand_mask(), "label": 3}
    out = ForegroundCropd(["image", "mask"], source_key="mask", margin=2)(item)
    np.testing.assert_array_equal(out["image"], ramp()[:, 8:22, 13:37])
    assert out["mask"].shape == (1, 14, 24) and out["label"] == 3
    first_key = ForegroundCropd(["mask", "image"])(item)  # source defaults to the first key
    assert first_key["image"].shape == (1, 10, 20)


@pytest.mark.parametrize("crop", [ForegroundCrop(), ForegroundCropd("image")], ids=["array", "dict"])
def test_empty_foreground_passes_through_with_warning(crop, caplog: pytest.LogCaptureFixture) -> None:
    image = np.zeros((1, 8, 8), np.float32)
    with caplog.at_level(logging.WARNING, logger="common.transforms.crop_resize"):
        out = crop(image) if isinstance(crop, ForegroundCrop) else crop({"image": image})["image"]
    assert out is image and "no foreground" in caplog.text


@pytest.mark.parametrize(
    "make",
    [lambda a: a, lambda a: (a * 200).astype(np.uint8), torch.from_numpy, lambda a: MetaTensor(torch.from_numpy(a))],
    ids=["numpy", "numpy-u8", "torch", "metatensor"],
)
def test_crop_preserves_type_and_metatensor_is_invertible(make) -> None:
    img = make(hand_mask())
    crop = ForegroundCrop(margin=1)
    out = crop(img)
    assert type(out) is type(img) and out.dtype == img.dtype and tuple(out.shape) == (1, 12, 22)
    if isinstance(img, MetaTensor):
        assert out.affine[0, 3] == ROWS[0] - 1 and out.affine[1, 3] == COLS[0] - 1
        restored = crop.inverse(out)
        assert restored.shape == img.shape and torch.equal(restored, img)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"margin": -1}, ConfigError, r"margin must be an int >= 0 .* found -1"),
        ({"margin": 1.5}, ConfigError, r"or a float in \[0, 1\] \(fraction\), found 1.5"),
        ({"margin": True}, ConfigError, r"found True"),
    ],
    ids=["negative", "fraction>1", "bool"],
)
def test_crop_bad_margin(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        ForegroundCrop(**kwargs)


def test_crop_bad_inputs() -> None:
    with pytest.raises(DataError, match=r"mask spatial shape \(40, 59\) differs from image \(40, 60\)"):
        ForegroundCrop()(ramp(), mask=hand_mask()[:, :, :59])
    with pytest.raises(DataError, match=r"channel-first image \(C, H, W\), found shape \(40, 60\)"):
        ForegroundCrop()(ramp()[0])
    with pytest.raises(DataError, match=r"'mask': spatial shape \(40, 59\) differs from 'image' \(40, 60\)"):
        ForegroundCropd(["image", "mask"])({"image": ramp(), "mask": hand_mask()[:, :, :59]})


def content_extent(out: np.ndarray, background: float) -> tuple[tuple[int, int], tuple[int, int]]:
    rows = np.flatnonzero((out[0] != background).any(axis=1))
    cols = np.flatnonzero((out[0] != background).any(axis=0))
    return (int(rows[0]), int(rows[-1]) + 1), (int(cols[0]), int(cols[-1]) + 1)


@pytest.mark.parametrize(
    ("shape", "size"),
    [((100, 50), 64), ((50, 100), 64), ((37, 80), 48), ((300, 200), 128), ((20, 10), 64), ((64, 64), 32)],
    ids=["portrait", "landscape", "odd", "down-3to2", "upsample", "square"],
)
@pytest.mark.parametrize("mode", ["area", "bilinear"])
def test_aspect_resize_gives_square_with_content_aspect_kept(shape: tuple[int, int], size: int, mode: str) -> None:
    image = np.full((1, *shape), 0.5, np.float32)
    out = AspectResize(size, mode=mode, pad_value=-1.0)(image)
    assert out.shape == (1, size, size)
    (r0, r1), (c0, c1) = content_extent(out, background=-1.0)
    scale = size / max(shape)
    assert (r1 - r0, c1 - c0) == (round(shape[0] * scale), round(shape[1] * scale))
    assert abs((r1 - r0) / (c1 - c0) - shape[0] / shape[1]) <= 1.0 / min(r1 - r0, c1 - c0)
    assert abs(r0 - (size - r1)) <= 1 and abs(c0 - (size - c1)) <= 1  # centred
    np.testing.assert_allclose(out[0, r0:r1, c0:c1], 0.5, atol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a,
        lambda a: (a * 255).astype(np.uint8),
        lambda a: torch.from_numpy(a),
        lambda a: MetaTensor(torch.from_numpy(a), meta={"filename_or_obj": "x.png"}),
    ],
    ids=["numpy", "numpy-u8", "torch", "metatensor"],
)
def test_aspect_resize_preserves_type(make) -> None:
    rng = np.random.default_rng(0)
    img = make(rng.uniform(0.0, 1.0, (3, 90, 60)).astype(np.float32))
    resize = AspectResize(48)
    out = resize(img)
    assert type(out) is type(img) and out.dtype == img.dtype and tuple(out.shape) == (3, 48, 48)
    if isinstance(img, MetaTensor):
        assert out.meta["filename_or_obj"] == "x.png"
        assert resize.inverse(out).shape == img.shape


def test_aspect_resize_uint8_is_rounded_not_truncated() -> None:
    img = np.random.default_rng(1).integers(0, 256, (1, 40, 20), dtype=np.uint8)
    reference = AspectResize(30, pad_value=7)(img.astype(np.float32))
    assert np.any(reference % 1 > 0.5)  # truncation would differ from rounding here
    out = AspectResize(30, pad_value=7)(img)
    assert out.dtype == np.uint8 and out[0, 0, 0] == 7
    np.testing.assert_array_equal(out, np.rint(reference).astype(np.uint8))


def test_dict_twin_resizes_image_and_mask_alike() -> None:
    mask = np.zeros((1, 90, 60), np.float32)
    mask[0, 30:60, 20:40] = 1.0
    item = {"image": mask * 0.7, "mask": mask}
    out = AspectResized(["image", "mask"], 45, mode=["bilinear", "nearest"], pad_value=[0.0, 0.0])(item)
    assert out["image"].shape == out["mask"].shape == (1, 45, 45)
    assert set(np.unique(out["mask"])) == {0.0, 1.0}
    assert content_extent(out["mask"], 0.0) == ((15, 30), (17, 27))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": 0}, r"image_size must be an int >= 1, found 0"),
        ({"image_size": "512"}, r"image_size must be an int >= 1, found '512'"),
        ({"image_size": 64, "mode": "cubic"}, r"unknown resize mode 'cubic'; choose from: area, nearest"),
    ],
    ids=["zero", "string", "mode"],
)
def test_aspect_resize_bad_config(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        AspectResize(**kwargs)
    with pytest.raises(ConfigError, match=r"one per key \(2 keys\)"):
        AspectResized(["image", "mask"], 64, mode=["area", "nearest", "area"])
