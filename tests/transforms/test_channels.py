"""ToImageNetInput(d): grey -> 3 channels, RGB kept, ImageNet mean/std, type preservation, bad inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from skimage import data

from common.errors import ConfigError, DataError
from common.transforms import ToImageNetInput, ToImageNetInputd
from common.transforms.channels import IMAGENET_MEAN, IMAGENET_STD

MEAN = np.asarray(IMAGENET_MEAN).reshape(3, 1, 1)
STD = np.asarray(IMAGENET_STD).reshape(3, 1, 1)


def test_grey_is_repeated_then_normalised_per_channel() -> None:
    grey = np.linspace(0, 1, 12, dtype=np.float32).reshape(1, 3, 4)
    out = ToImageNetInput()(grey)
    assert out.shape == (3, 3, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out, (np.repeat(grey, 3, axis=0) - MEAN) / STD, rtol=1e-6)


def test_real_rgb_histology_is_kept_and_normalised() -> None:
    rgb = np.moveaxis(data.immunohistochemistry()[::8, ::8], -1, 0).astype(np.float64) / 255.0  # (3, 64, 64)
    out = ToImageNetInput()(rgb)
    assert out.shape == rgb.shape and out.dtype == np.float64
    np.testing.assert_allclose(out, (rgb - MEAN) / STD, rtol=1e-12)
    np.testing.assert_array_equal(ToImageNetInput(normalize=False)(rgb), rgb)


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a,
        lambda a: torch.from_numpy(a),
        lambda a: torch.from_numpy(a).to(torch.float64),
        lambda a: MetaTensor(torch.from_numpy(a), meta={"filename_or_obj": "x.png"}),
    ],
    ids=["numpy", "torch-f32", "torch-f64", "metatensor"],
)
def test_type_dtype_and_meta_preserved(make: Any) -> None:
    img = make(np.full((1, 5, 6), 0.5, np.float32))
    out = ToImageNetInput(mean=[0.5, 0.25, 0.0], std=[0.5, 0.25, 1.0])(img)
    assert type(out) is type(img) and out.dtype == img.dtype and tuple(out.shape) == (3, 5, 6)
    np.testing.assert_allclose(np.asarray(out)[:, 0, 0], [0.0, 1.0, 0.5])
    if isinstance(img, MetaTensor):
        assert out.meta["filename_or_obj"] == "x.png"


def test_integer_image_is_only_repeated_without_normalisation() -> None:
    img = np.arange(4, dtype=np.uint8).reshape(1, 2, 2)
    out = ToImageNetInput(normalize=False)(img)
    assert out.dtype == np.uint8 and out.shape == (3, 2, 2)
    assert all(np.array_equal(channel, img[0]) for channel in out)


def test_dictionary_twin_leaves_other_keys() -> None:
    out = ToImageNetInputd("image")({"image": torch.zeros(1, 2, 2), "label": [1, 0]})
    assert out["image"].shape == (3, 2, 2) and out["label"] == [1, 0]


@pytest.mark.parametrize(
    ("img", "match"),
    [
        (np.zeros((4, 4), np.float32), r"channel-first .*got shape \(4, 4\)"),
        (np.zeros((2, 4, 4), np.float32), r"1 \(grey\) or 3 \(RGB\) channels first, got shape \(2, 4, 4\) \(2 "),
        (np.zeros((4, 4, 3), np.float32), r"got shape \(4, 4, 3\) \(4 channels\); move a channel-last axis"),
        (torch.zeros(4, 8, 8), r"\(4 channels\).*drop alpha"),
        (np.zeros((1, 4, 4), np.uint8), r"needs a float image in \[0, 1\], got dtype uint8"),
    ],
    ids=["2d", "two-channels", "channel-last", "rgba", "uint8-normalize"],
)
def test_bad_images_raise_data_error(img: Any, match: str) -> None:
    with pytest.raises(DataError, match=match):
        ToImageNetInput()(img)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mean": [0.5, 0.5]}, r"mean must be 3 numbers \(R, G, B\), got \[0.5, 0.5\]"),
        ({"std": [0.2, 0.0, 0.2]}, r"std values must be > 0, got \[0.2, 0.0, 0.2\]"),
        ({"mean": "imagenet"}, r"mean must be 3 numbers"),
        ({"std": [0.2, float("nan"), 0.2]}, r"std must be 3 finite numbers"),
    ],
    ids=["short-mean", "zero-std", "string-mean", "nan-std"],
)
def test_bad_parameters_raise_config_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ToImageNetInput(**kwargs)
