"""RandHEDJitter(d): stain-space jitter on a real histology tile."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from skimage.data import immunohistochemistry

from common.errors import ConfigError, DataError
from common.transforms import RandHEDJitter, RandHEDJitterd

TILE = np.moveaxis(immunohistochemistry()[:64, :64].astype(np.float32) / 255.0, -1, 0)


def test_jitter_changes_colour_within_range_and_is_seeded() -> None:
    first = RandHEDJitter(prob=1.0, sigma=0.2, bias=0.05).set_random_state(3)(TILE)
    again = RandHEDJitter(prob=1.0, sigma=0.2, bias=0.05).set_random_state(3)(TILE)
    assert first.shape == TILE.shape and first.dtype == np.float32
    assert 0.0 <= first.min() and first.max() <= 1.0
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - TILE).mean() > 0.005


def test_zero_strength_is_an_exact_round_trip() -> None:
    out = RandHEDJitter(prob=1.0, sigma=0.0, bias=0.0)(TILE)
    np.testing.assert_allclose(out, TILE, atol=1e-5)


@pytest.mark.parametrize("kind", ["torch", "metatensor"])
def test_type_is_preserved(kind: str) -> None:
    img = torch.from_numpy(TILE) if kind == "torch" else MetaTensor(torch.from_numpy(TILE), meta={"x": 1})
    out = RandHEDJitter(prob=1.0).set_random_state(0)(img)
    assert type(out) is type(img) and out.dtype == torch.float32
    if kind == "metatensor":
        assert out.meta["x"] == 1


def test_dictionary_twin_skips_with_prob_zero() -> None:
    out = RandHEDJitterd(keys="image", prob=0.0)({"image": TILE, "label": 1})
    assert out["image"] is TILE and out["label"] == 1


@pytest.mark.parametrize(("img", "match"), [(TILE[:1], "expects a \\(3, H, W\\)"), (TILE * 255, "in \\[0, 1\\]")],
                         ids=["grey", "unscaled"])
def test_bad_images(img: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        RandHEDJitter(prob=1.0)(img)


def test_negative_strength() -> None:
    with pytest.raises(ConfigError, match="must be >= 0"):
        RandHEDJitter(sigma=-0.1)


def test_device_path_equals_the_numpy_path() -> None:
    """The torch branch the GPU batch path takes (called directly here: no GPU in CI) gives the numpy result."""
    image = np.random.default_rng(0).uniform(0.05, 1.0, (3, 8, 8)).astype(np.float32)
    jitter = RandHEDJitter(prob=1.0, sigma=0.2, bias=0.1).set_random_state(1)
    expected = jitter(image)  # draws the scale and shift
    got = jitter._jitter_on_device(torch.from_numpy(image))
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-6)
