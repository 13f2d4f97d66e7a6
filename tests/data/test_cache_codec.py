"""common.data.cache_codec: the narrowest lossless dtype, bit-exact decoding, explicit lossy modes, tagged JSON."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Resize

from common.data.cache_codec import decode_array, encode_arrays, from_json, to_json
from common.errors import DataError

RNG = np.random.default_rng(0)
EIGHT_BIT = RNG.integers(0, 256, (1, 16, 16)).astype(np.float32) / np.float32(255)  # a PNG / 8-bit CLAHE output
SIXTEEN_BIT = RNG.integers(0, 65536, (1, 16, 16)).astype(np.float32) / np.float32(65535)
AREA_RESIZED = Resize((7, 7), mode="area")(torch.from_numpy(EIGHT_BIT)).numpy()  # averages: not k / 255
MASK = RNG.integers(0, 6, (1, 16, 16)).astype(np.float32)
NAN_LABELS = np.array([1.0, np.nan, 0.0, np.nan], dtype=np.float32)


@pytest.mark.parametrize(("array", "stored", "scale"), [
    (EIGHT_BIT, "uint8", 255),
    (SIXTEEN_BIT, "uint16", 65535),
    (AREA_RESIZED, "float32", None),
    (MASK, "uint8", None),
    (NAN_LABELS, "float32", None),
    (MASK.astype(np.int64), "uint8", None),
    (-MASK.astype(np.int64), "int8", None),
    (np.array([-0.0, 1.0], dtype=np.float32), "float16", None),
], ids=["8-bit-image", "16-bit-image", "area-resized", "mask", "nan-labels", "int64-mask", "negative-ints",
        "negative-zero"])  # fmt: skip
def test_narrowest_lossless_dtype_gives_back_the_same_bits(array: np.ndarray, stored: str, scale: int | None) -> None:
    encoding, [kept] = encode_arrays([array])
    assert (encoding["stored"], encoding["scale"]) == (stored, scale)
    assert kept.dtype == np.dtype(stored)
    back = decode_array(kept, encoding)
    assert back.dtype == array.dtype
    width = f"u{array.dtype.itemsize}" if array.dtype.kind == "f" else array.dtype
    assert np.array_equal(back.view(width), array.view(width))  # bit for bit, NaN and -0.0 included


def test_one_encoding_per_shard_falls_back_for_all() -> None:
    encoding, stored = encode_arrays([EIGHT_BIT, AREA_RESIZED])
    assert encoding["stored"] == "float32"
    assert all(s.dtype == np.float32 for s in stored)


def test_lossy_mode_is_explicit_and_records_its_error() -> None:
    encoding, [kept] = encode_arrays([AREA_RESIZED], mode="uint8")
    assert kept.dtype == np.uint8 and 0 < encoding["max_abs_error"] <= 0.5 / 255 + 1e-7
    assert encoding["max_abs_error"] == pytest.approx(float(np.abs(decode_array(kept, encoding) - AREA_RESIZED).max()))


def test_lossy_mode_refuses_values_outside_unit_range() -> None:
    with pytest.raises(DataError, match=r"shard 0, key 'image': dtype=uint8 quantises floats in \[0, 1\]"):
        encode_arrays([MASK], mode="uint8", where="shard 0, key 'image'")


def test_mixed_dtypes_are_refused() -> None:
    with pytest.raises(DataError, match=r"same dtype, found \['float32', 'float64'\]"):
        encode_arrays([MASK, MASK.astype(np.float64)])


def test_meta_round_trips_with_its_types() -> None:
    image = MetaTensor(torch.zeros(1, 4, 4), meta={"filename_or_obj": "a.png", "spatial_shape": np.array([4, 4]),
                                                   "original_channel_dim": float("nan"), "size": (4, 4)})  # fmt: skip
    meta = from_json(to_json(dict(image.meta)))
    assert meta["filename_or_obj"] == "a.png" and meta["size"] == (4, 4) and np.isnan(meta["original_channel_dim"])
    assert meta["spatial_shape"].dtype == image.meta["spatial_shape"].dtype
    assert torch.equal(meta["affine"], image.meta["affine"]) and meta["affine"].dtype == torch.float64
    assert meta["space"] == image.meta["space"] and type(meta["space"]) is type(image.meta["space"])


def test_unstorable_value_names_where() -> None:
    with pytest.raises(DataError, match="item.x: cannot store a builtins.object"):
        to_json({"x": object()}, "item")
